"""Text classification's recipe (single-label, multi-label, regression): data -> backbone -> strategy ->
training -> evaluation -> guard -> run folder. ``transferkit.fit`` reaches it through the task's spec.
"""

from __future__ import annotations

import logging
import shutil
import time

import pandas as pd
import torch
from transformers import AutoTokenizer

from transferkit import artifacts, hardware
from transferkit.artifacts import DATAFRAME, SPLITS, RunResult
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import run_from
from transferkit.config import RunConfig
from transferkit.data import DatasetSplits, load_splits
from transferkit.data.targets import encode_targets
from transferkit.data.text import Collator, FeatureDataset, HiddenDataset, TokenizedDataset
from transferkit.errors import RunError
from transferkit.evaluation import primary_metric, save_confusion_matrix, save_training_curves
from transferkit.evaluation.guard import keep_better
from transferkit.evaluation.scoring import score
from transferkit.inference import forward_in_order
from transferkit.manifest import RunManifest, TextFields, write_manifest
from transferkit.remote_code.modeling_transferkit import pool
from transferkit.strategies import StrategyPlan, count_parameters
from transferkit.strategies.base import plan_for
from transferkit.strategies.cache import extract_hidden, frozen_features
from transferkit.strategies.probe import (
    baseline_block,
    baseline_model,
    fit_probe,
    load_into_head,
    wants_features,
    wants_probe,
)
from transferkit.tasks.text_classification.card import write_text_card
from transferkit.tasks.text_classification.model import build_model
from transferkit.training import strategy_choice as auto
from transferkit.training.loop import TrainResult, make_accelerator, train_loop
from transferkit.training.losses import balanced_class_weights

log = logging.getLogger("transferkit")


def _targets_and_data(cfg: RunConfig, splits: DatasetSplits, tokenizer) -> tuple[dict, dict]:
    problem, labels = cfg.task.problem, splits.labels
    targets = {name: encode_targets(getattr(splits, name), problem, labels) for name in SPLITS}
    data = {
        name: TokenizedDataset(
            tokenizer, getattr(splits, name)["text"].tolist(), targets[name], cfg.backbone.max_length
        )
        for name in SPLITS
    }
    return targets, data


def fit_text_classification(
    cfg: RunConfig, frames: dict[str, pd.DataFrame] | None, resume: bool = False
) -> RunResult:
    """Text classification: the core task's fit (see :func:`fit`)."""
    t_start = time.perf_counter()
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    problem = cfg.task.problem
    data_cfg = cfg.data
    if cfg.data.train == DATAFRAME:  # the saved config keeps the placeholder, so it loads back
        if not frames or "train" not in frames:
            raise RunError(
                "this run was trained from pandas DataFrames: pass frames={'train': ...} (Python API) to resume it"
            )
        data_cfg = cfg.data.model_copy(update={"train": None})
    splits: DatasetSplits = load_splits(data_cfg, problem, frames)
    spec = resolve_backbone(cfg.backbone)
    accelerator = make_accelerator(cfg.training)
    main = accelerator.is_main_process

    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    labels = splits.labels
    model = build_model(spec, cfg, labels)
    targets, data = _targets_and_data(cfg, splits, tokenizer)
    collator = Collator(tokenizer, torch.long if problem == "single_label" else torch.float32)
    cfg, decision = auto.resolve(cfg, lambda: auto.measure(
        cfg, model, lambda m, b: m(**b), data["train"], collator,
        splits.train["label"].tolist() if problem != "regression" else None,
        len(data["validation"]) + len(data["test"]),
    ))  # fmt: skip
    run_dir = artifacts.open_run(cfg, accelerator, resume)
    decision = auto.remember(run_dir, decision, main)

    plan = plan_for(model, cfg.strategy, cfg.training, accelerator.num_processes)
    trainable, total = count_parameters(model)

    # Frozen pretrained features: the cache of frozen strategies, the probe of LP-FT and the baseline share them.
    features = None
    if wants_features(plan, cfg):
        keys = {n: getattr(splits, n)["text"].tolist() for n in SPLITS}
        features = frozen_features(model, data, collator, cfg, plan, run_dir, accelerator, keys)
    metric = cfg.training.metric_for_best or primary_metric(problem)[0]
    metrics: dict = {}
    probe = None
    if features is not None and wants_probe(plan, cfg):
        probe = fit_probe(
            features["train"],
            targets["train"],
            features["validation"],
            targets["validation"],
            problem,
            model.config.num_labels,
            cfg.training.seed,
        )
    if cfg.evaluation.pretrained_baseline and probe is not None:
        metrics["pretrained_baseline"] = baseline_block(probe, {
            split: score(probe.logits(features[split]), targets[split], problem, labels, True)
            for split in ("validation", "test")
        })  # fmt: skip
    if plan.probe_init or plan.closed_form:
        load_into_head(model, probe)

    module, forward, sets = _training_view(model, plan, data, features, targets, collator, cfg)

    def evaluate(logits):
        return score(logits, targets["validation"], problem, labels)

    if plan.closed_form:
        result = TrainResult(best_metric=probe.validation_score)
    else:
        class_weights = (
            balanced_class_weights(targets["train"], len(labels))
            if cfg.training.class_weights == "auto" and problem == "single_label"
            else None
        )
        sample_weights = None
        if cfg.training.sampling == "balanced" and problem == "single_label":
            per_class = balanced_class_weights(targets["train"], len(labels)).numpy()
            sample_weights = per_class[targets["train"]].tolist()
        result = train_loop(
            module, forward, plan, sets["train"], sets["validation"], collator, evaluate, cfg.training, problem, metric,
            class_weights=class_weights, sample_weights=sample_weights, log_dir=run_dir / "logs",
            checkpoint_dir=run_dir / "checkpoints", resume=resume, tensorboard=cfg.output.tensorboard, accelerator=accelerator,
        )  # fmt: skip
        module = accelerator.unwrap_model(module)
    trainable = count_parameters(model)[0] if plan.stages else trainable  # staged: what trained by the end
    exported = plan.merge_adapter(model, run_dir, cfg.output.save_model, main)
    module.eval()
    for split in ("validation", "test"):
        logits = forward_in_order(
            lambda b: forward(module, b), sets[split], collator, cfg.training.eval_batch_size, accelerator,
            max_tokens=cfg.training.eval_max_tokens,
        )  # fmt: skip
        metrics[split] = score(logits, targets[split], problem, labels, True)
    metrics = {"test": metrics.pop("test"), "validation": metrics.pop("validation"), **metrics}
    fallback = keep_better(
        metrics,
        metric,
        cfg.evaluation.keep_better,
        lambda: baseline_model(lambda c: build_model(spec, c, labels), cfg, probe),
    )
    if fallback is not None:  # the run's model is the pretrained trunk + the probe: nothing strategy-specific
        model, plan, exported = fallback, StrategyPlan(param_groups=[]), False
        shutil.rmtree(run_dir / "adapter", ignore_errors=True)  # the discarded model's adapter
    if decision is not None:
        metrics["auto"] = decision
    if features is not None and frozen_features.store is not None:  # what training.feature_store gave
        metrics["feature_store"] = frozen_features.store
    metrics.update(
        trainable_parameters=trainable,
        total_parameters=total,
        strategy=cfg.strategy.name,
        backbone=spec.name,
        task=cfg.task.type,
        problem=problem,
        best_validation_metric={"name": metric, "value": result.best_metric, "step": result.best_step},
        training=result.summary(
            time.perf_counter() - t_start, precision=hardware.precision_of(accelerator).record()
        ),
    )
    if main:
        _write_outputs(
            run_dir,
            cfg,
            model,
            plan,
            tokenizer,
            metrics,
            result.history,
            splits,
            spec,
            labels,
            trainable,
            total,
            exported,
        )
    accelerator.wait_for_everyone()
    return RunResult(run_dir, metrics)


def _training_view(model, plan, data, features, targets, collator, cfg):
    """What trains and on what: (module, forward(module, batch) -> logits, data sets per split)."""
    if plan.cache == "features":
        sets = {name: FeatureDataset(features[name], targets[name], data[name].lengths) for name in data}

        def forward(m, batch):
            return m(batch["features"])

        return model.head, forward, sets
    if plan.cache == "hidden":
        hidden = {
            name: extract_hidden(
                model, ds, collator, cfg.training.eval_batch_size, plan.cut - 1, cfg.training.precision
            )
            for name, ds in data.items()
        }
        sets = {name: HiddenDataset(hidden[name], targets[name]) for name in data}
        pooling = model.config.pooling

        def forward(m, batch):
            h = run_from(m.backbone, batch["hidden"], batch["attention_mask"], plan.cut)  # (B, T, D)
            return m.head(pool(h, batch["attention_mask"], pooling))

        return model, forward, sets

    def forward(m, batch):
        return m(**batch).logits

    return model, forward, data


def _write_outputs(
    run_dir,
    cfg,
    model,
    plan,
    tokenizer,
    metrics,
    history,
    splits,
    spec,
    labels,
    trainable,
    total,
    exported=False,
) -> None:
    artifacts.save_predictions(run_dir, metrics)  # first: everything below reads plain metrics
    manifest = RunManifest(
        task=cfg.task.type,
        problem=cfg.task.problem,
        labels=labels,
        max_length=cfg.backbone.max_length,
        text=TextFields(pooling=spec.pooling),
        precision=metrics["training"]["precision"]["name"],
    )
    write_manifest(run_dir, manifest)
    if plan.save_extra is not None and not exported:
        plan.save_extra(model, run_dir)
    if cfg.output.save_model:
        artifacts.save_model(plan.plain_model(model, exported), tokenizer, run_dir)
    cm = metrics["test"].get("confusion_matrix")
    if cm:
        artifacts.save_json(run_dir / "confusion_matrix.json", cm)
        save_confusion_matrix(cm, run_dir / "confusion_matrix.png", title=f"{run_dir.name}: test")
    if history:
        save_training_curves(history, run_dir / "training_curves.png")
    info = {
        "backbone": spec.name, "labels": labels, "source": splits.source, "pooling": spec.pooling,
        "sizes": {n: len(getattr(splits, n)) for n in ("train", "validation", "test")},
        "trainable_parameters": trainable, "total_parameters": total,
    }  # fmt: skip
    write_text_card(run_dir, cfg, metrics, info)
    artifacts.save_json(run_dir / "metrics.json", metrics)
