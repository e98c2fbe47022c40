"""Image classification: image folders, CSV lists of paths, ``.npz`` arrays or catalog images -> a label.

The run is the text task's run with images: the same strategies (through the backbone contract), training
loop, checkpoints, metrics and run folder. What differs: images are decoded and preprocessed per backbone
(:mod:`transferkit.tasks.image_classification.data`), augmentation turns feature caching off (random inputs
cannot be cached), and the saved model is ``TransferkitForImageClassification`` plus, for Hugging Face
backbones, a stock ``transformers`` copy.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from transferkit import artifacts, hardware
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import hidden_after, run_from
from transferkit.config import RunConfig
from transferkit.errors import ConfigError
from transferkit.evaluation import primary_metric, save_confusion_matrix, save_training_curves
from transferkit.evaluation.guard import keep_better
from transferkit.evaluation.scoring import score
from transferkit.inference import forward_in_order, ordered_loader
from transferkit.manifest import ImagePreprocess, RunManifest, write_manifest
from transferkit.strategies import StrategyPlan, count_parameters
from transferkit.strategies.base import plan_for
from transferkit.strategies.cache import frozen_features
from transferkit.strategies.probe import (
    baseline_block,
    baseline_model,
    fit_probe,
    load_into_head,
    wants_features,
    wants_probe,
)
from transferkit.tasks.image_classification.data import Augment, ImageCollator, ImageDataset, TensorDataset
from transferkit.training import strategy_choice as auto
from transferkit.training.loop import TrainResult, make_accelerator, train_loop
from transferkit.training.losses import balanced_class_weights
from transferkit.utils.io import DiscardFolder, publish_folder

SPLITS = ("train", "validation", "test")
log = logging.getLogger("transferkit")


def fit(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None, resume: bool = False):
    """Trains, evaluates and writes the run folder of an image classification run (see ``transferkit.fit``)."""
    from transferkit.artifacts import RunResult
    from transferkit.data.targets import encode_targets
    from transferkit.tasks.image_classification.model import build_image_model
    from transferkit.tasks.image_classification.sources import load_image_splits, preprocessor_for

    t_start = time.perf_counter()
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    if cfg.task.problem != "single_label":
        raise ConfigError("task.problem: image-classification supports single_label only")
    splits = load_image_splits(cfg, frames)
    spec = resolve_backbone(cfg.backbone)
    accelerator = make_accelerator(cfg.training)
    main = accelerator.is_main_process
    labels = splits.labels
    model = build_image_model(spec, cfg, labels)  # checks the backbone before the run folder exists

    preprocess = preprocessor_for(spec, cfg.image.image_size)
    targets = {n: encode_targets(getattr(splits, n), "single_label", labels) for n in SPLITS}
    images = {n: getattr(splits, n)["text"].tolist() for n in SPLITS}
    im = cfg.image
    augment = Augment(im.flip, im.random_resized_crop, im.crop_scale, im.color_jitter)
    # clean (un-augmented) inputs for evaluation, features and probes; the train set may augment
    clean = {n: ImageDataset(images[n], targets[n], preprocess) for n in SPLITS}
    data = dict(
        clean, train=ImageDataset(images["train"], targets["train"], preprocess, augment, cfg.training.seed)
    )
    collator = ImageCollator()
    size = cfg.image.image_size or (preprocess.size[0] if getattr(preprocess, "size", None) else 0)
    cfg, decision = auto.resolve(cfg, lambda: auto.measure(
        cfg, model, lambda m, b: m(pixel_values=b["pixel_values"]), clean["train"], collator,
        splits.train["label"].tolist(), len(clean["validation"]) + len(clean["test"]), input_length=size,
    ))  # fmt: skip
    run_dir = artifacts.open_run(cfg, accelerator, resume)
    decision = auto.remember(run_dir, decision, main)

    plan = plan_for(model, cfg.strategy, cfg.training, accelerator.num_processes)
    if augment.active and plan.cache is not None:
        log.info("augmentation is on: feature caching is off (augmented images change every epoch)")
        plan.cache = None
    trainable, total = count_parameters(model)

    features = None
    if wants_features(plan, cfg):
        features = frozen_features(
            model, clean, collator, cfg, plan, run_dir, accelerator, _image_keys(images)
        )
    metric = cfg.training.metric_for_best or primary_metric("single_label")[0]
    metrics: dict = {}
    probe = None
    if features is not None and wants_probe(plan, cfg):
        probe = fit_probe(features["train"], targets["train"], features["validation"], targets["validation"], "single_label", len(labels), cfg.training.seed)  # fmt: skip
    if cfg.evaluation.pretrained_baseline and probe is not None:
        metrics["pretrained_baseline"] = baseline_block(probe, {
            s: score(probe.logits(features[s]), targets[s], "single_label", labels, True) for s in ("validation", "test")
        })  # fmt: skip
    if plan.probe_init or plan.closed_form:
        load_into_head(model, probe)

    module, forward, sets, eval_sets = _training_view(
        model, plan, data, clean, features, targets, collator, cfg
    )

    def evaluate(logits):
        return score(logits, targets["validation"], "single_label", labels)

    if plan.closed_form:
        result = TrainResult(best_metric=probe.validation_score)
    else:
        per_class = balanced_class_weights(targets["train"], len(labels))
        result = train_loop(
            module, forward, plan, sets["train"], eval_sets["validation"], collator, evaluate, cfg.training, "single_label", metric,
            class_weights=per_class if cfg.training.class_weights == "auto" else None,
            sample_weights=per_class.numpy()[targets["train"]].tolist() if cfg.training.sampling == "balanced" else None,
            log_dir=run_dir / "logs", checkpoint_dir=run_dir / "checkpoints", resume=resume,
            tensorboard=cfg.output.tensorboard, accelerator=accelerator,
        )  # fmt: skip
        module = accelerator.unwrap_model(module)
    trainable = count_parameters(model)[0] if plan.stages else trainable
    merged = plan.merge_adapter(model, run_dir, cfg.output.save_model, main)
    module.eval()
    for split in ("validation", "test"):
        logits = forward_in_order(lambda b: forward(module, b), eval_sets[split], collator, cfg.training.eval_batch_size, accelerator)  # fmt: skip
        metrics[split] = score(logits, targets[split], "single_label", labels, True)
    metrics = {"test": metrics.pop("test"), "validation": metrics.pop("validation"), **metrics}
    fallback = keep_better(
        metrics,
        metric,
        cfg.evaluation.keep_better,
        lambda: baseline_model(lambda c: build_image_model(spec, c, labels), cfg, probe),
    )
    if fallback is not None:  # the pretrained trunk + the probe: nothing strategy-specific to save
        model, plan, merged = fallback, StrategyPlan(param_groups=[]), False
        shutil.rmtree(run_dir / "adapter", ignore_errors=True)
    if decision is not None:
        metrics["auto"] = decision
    if features is not None and frozen_features.store is not None:  # what training.feature_store gave
        metrics["feature_store"] = frozen_features.store
    metrics.update(
        trainable_parameters=trainable, total_parameters=total, strategy=cfg.strategy.name, backbone=spec.name,
        task=cfg.task.type, problem="single_label",
        best_validation_metric={"name": metric, "value": result.best_metric, "step": result.best_step},
        training=result.summary(
            time.perf_counter() - t_start, precision=hardware.precision_of(accelerator).record()
        ),
    )  # fmt: skip
    if main:
        _write_outputs(
            run_dir,
            cfg,
            model,
            plan,
            preprocess,
            metrics,
            result.history,
            splits,
            spec,
            trainable,
            total,
            merged,
        )
    accelerator.wait_for_everyone()
    return RunResult(run_dir, metrics)


def _extract_hidden(
    model, dataset, collator, batch_size: int, group: int, precision: str
) -> list[torch.Tensor]:
    """Per-image output of layer group ``group`` of the frozen bottom ((T, D) tokens or (C, h, w) maps)."""
    out: list[torch.Tensor | None] = [None] * len(dataset)
    model.eval()
    with torch.inference_mode():
        for batch in ordered_loader(dataset, collator, batch_size):
            idx = batch.pop("idx")
            with hardware.autocast(precision):
                hidden = hidden_after(model.backbone, batch, group).float()  # stored in fp32
            for row, i in enumerate(idx.tolist()):
                out[i] = hidden[row].clone()
    return out


def _training_view(model, plan, data, clean, features, targets, collator, cfg):
    """(module, forward(module, batch) -> logits, training sets, clean evaluation sets)."""
    if plan.cache == "features":
        sets = {n: TensorDataset("features", features[n], targets[n]) for n in SPLITS}
        return model.head, lambda m, b: m(b["features"]), sets, sets
    if plan.cache == "hidden":
        bs = cfg.training.eval_batch_size
        sets = {n: TensorDataset("hidden", _extract_hidden(model, clean[n], collator, bs, plan.cut - 1, cfg.training.precision), targets[n]) for n in SPLITS}  # fmt: skip

        def forward(m, batch):
            return m.head(run_from(m.backbone, batch["hidden"], None, plan.cut))  # (B, D) -> (B, C)

        return model, forward, sets, sets
    return model, lambda m, b: m(pixel_values=b["pixel_values"]).logits, data, clean


def _image_keys(images: dict[str, list]) -> dict[str, list[str]]:
    """Feature-store keys: a data URI as is, a file by path, size and modification time."""
    import os

    def key(v) -> str:
        v = str(v)
        if v.startswith("data:") or not os.path.exists(v):
            return v
        st = os.stat(v)
        return f"{os.path.abspath(v)}|{st.st_size}|{st.st_mtime_ns}"

    return {n: [key(v) for v in vals] for n, vals in images.items()}


def _write_outputs(
    run_dir, cfg, model, plan, preprocess, metrics, history, splits, spec, trainable, total, merged
):
    artifacts.save_predictions(run_dir, metrics)  # first: everything below reads plain metrics
    from transferkit.tasks.image_classification.card import write_image_card
    from transferkit.tasks.image_classification.model import save_stock_transformers

    manifest = RunManifest(
        task=cfg.task.type,
        problem="single_label",
        labels=splits.labels,
        preprocess=ImagePreprocess.model_validate(preprocess.to_dict()),
        precision=metrics["training"]["precision"]["name"],
    )
    write_manifest(run_dir, manifest)
    if plan.save_extra is not None and not merged:
        plan.save_extra(model, run_dir)
    if cfg.output.save_model:
        final = plan.plain_model(model, merged)
        _save_model(final, preprocess.processor, run_dir / "model")
        # an unmerged adapter (--no-merge) leaves the pretrained trunk in RUN/model: no stock copy of that
        if not _unmerged_adapter(run_dir):
            with publish_folder(run_dir / "transformers") as tmp:  # replaces one a killed save left
                if not save_stock_transformers(final, tmp, preprocess.processor):
                    raise DiscardFolder  # no stock transformers class computes this model
    cm = metrics["test"].get("confusion_matrix")
    if cm:
        artifacts.save_json(run_dir / "confusion_matrix.json", cm)
        save_confusion_matrix(cm, run_dir / "confusion_matrix.png", title=f"{run_dir.name}: test")
    if history:
        save_training_curves(history, run_dir / "training_curves.png")
    sizes = {n: len(getattr(splits, n)) for n in SPLITS}
    write_image_card(run_dir, cfg, metrics, spec.name, splits.labels, splits.source, sizes, trainable, total)
    artifacts.save_json(run_dir / "metrics.json", metrics)


def _unmerged_adapter(run_dir: Path) -> bool:
    info = run_dir / "adapter" / "transferkit.json"
    return info.is_file() and not json.loads(info.read_text()).get("merged", True)


def _save_model(model, processor, final: Path) -> None:
    """``save_pretrained`` into ``model.partial/``, renamed to ``model/`` once complete."""
    with publish_folder(final) as tmp:
        model.save_pretrained(tmp)
        if processor is not None:
            processor.save_pretrained(tmp)
