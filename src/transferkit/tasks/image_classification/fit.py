"""Image classification: image folders, CSV lists of paths, ``.npz`` arrays or catalog images -> a label.

The run is the text task's run with images: the same strategies (through the backbone contract), training
loop, checkpoints, metrics and run folder. What differs: images are decoded and preprocessed per backbone
(:mod:`transferkit.tasks.image_classification.data`), augmentation turns feature caching off (random inputs
cannot be cached), and the saved model is ``TransferkitForImageClassification`` plus, for Hugging Face
backbones, a stock ``transformers`` copy.
"""

from __future__ import annotations

import logging

import pandas as pd

from transferkit.artifacts import RunResult
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import run_from
from transferkit.config import RunConfig
from transferkit.data.targets import encode_targets
from transferkit.errors import ConfigError
from transferkit.evaluation import primary_metric
from transferkit.evaluation.scoring import score
from transferkit.manifest import ImagePreprocess, RunManifest
from transferkit.strategies import count_parameters
from transferkit.strategies.base import plan_for
from transferkit.strategies.cache import frozen_features
from transferkit.strategies.probe import baseline_model, wants_features
from transferkit.tasks import recipe
from transferkit.tasks.image_classification.card import write_image_card
from transferkit.tasks.image_classification.data import (
    Augment,
    ImageCollator,
    ImageDataset,
    TensorDataset,
    feature_keys,
)
from transferkit.tasks.image_classification.model import build_image_model, hidden_states, save_image_model
from transferkit.tasks.image_classification.sources import load_image_splits, preprocessor_for
from transferkit.training import strategy_choice as auto

SPLITS = ("train", "validation", "test")
log = logging.getLogger("transferkit")


def fit(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None, resume: bool = False) -> RunResult:
    """Trains, evaluates and writes the run folder of an image classification run (see ``transferkit.fit``)."""
    run = recipe.begin(cfg, resume)
    if cfg.task.problem != "single_label":
        raise ConfigError("task.problem: image-classification supports single_label only")
    splits = load_image_splits(cfg, frames)
    spec = resolve_backbone(cfg.backbone)
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
    cfg = recipe.open_run(run, lambda: auto.measure(
        cfg, model, lambda m, b: m(pixel_values=b["pixel_values"]), clean["train"], collator,
        splits.train["label"].tolist(), len(clean["validation"]) + len(clean["test"]), input_length=size,
    ))  # fmt: skip
    plan = plan_for(model, cfg.strategy, cfg.training, run.accelerator.num_processes)
    if augment.active and plan.cache is not None:
        log.info("augmentation is on: feature caching is off (augmented images change every epoch)")
        plan.cache = None
    trainable, total = count_parameters(model)

    features = None
    if wants_features(plan, cfg):
        keys = feature_keys(images)
        features = frozen_features(model, clean, collator, cfg, plan, run.run_dir, run.accelerator, keys)
    probe, metrics = recipe.probe_and_baseline(
        run, model, plan, features,
        lambda: (features["train"], targets["train"], features["validation"], targets["validation"]),
        "single_label", len(labels),
        lambda probe, s: score(probe.logits(features[s]), targets[s], "single_label", labels, True),
    )  # fmt: skip

    module, forward, sets, eval_sets = _training_view(
        model, plan, data, clean, features, targets, collator, cfg
    )
    metric = cfg.training.metric_for_best or primary_metric("single_label")[0]
    result, module = recipe.train(
        run, plan, probe, module, forward, sets["train"], eval_sets["validation"], collator,
        lambda logits: score(logits, targets["validation"], "single_label", labels), "single_label", metric,
        **recipe.example_weights(cfg, targets["train"], len(labels)),
    )  # fmt: skip
    trainable, merged = recipe.after_training(run, model, plan, trainable)
    scores = recipe.final_scores(
        run, module, forward, eval_sets, collator,
        lambda logits, s: score(logits, targets[s], "single_label", labels, True), by_tokens=False,
    )  # fmt: skip
    metrics = {**scores, **metrics}
    model, plan, merged = recipe.guard(
        run, metrics, metric, lambda: baseline_model(lambda c: build_image_model(spec, c, labels), cfg, probe),
        model, plan, merged, min_delta=result.guard_min_delta,
    )  # fmt: skip
    recipe.record(
        run, metrics, backbone=spec.name, metric=metric, result=result, trainable=trainable, total=total,
        features=features, task_fields={"problem": "single_label"},
    )  # fmt: skip
    manifest = RunManifest(
        task=cfg.task.type, problem="single_label", labels=labels,
        preprocess=ImagePreprocess.model_validate(preprocess.to_dict()),
        precision=metrics["training"]["precision"]["name"],
    )  # fmt: skip
    sizes = {n: len(getattr(splits, n)) for n in SPLITS}
    return recipe.finish(run, metrics, lambda: recipe.write_run(
        run.run_dir, cfg, metrics, manifest, model, plan, merged, result.history,
        lambda final: save_image_model(final, preprocess.processor, run.run_dir),
        lambda saved: write_image_card(
            run.run_dir, cfg, metrics, spec.name, labels, splits.source, sizes, trainable, total
        ),
    ))  # fmt: skip


def _training_view(model, plan, data, clean, features, targets, collator, cfg):
    """(module, forward(module, batch) -> logits, training sets, clean evaluation sets)."""
    if plan.cache == "features":
        sets = {n: TensorDataset("features", features[n], targets[n]) for n in SPLITS}
        return model.head, lambda m, b: m(b["features"]), sets, sets
    if plan.cache == "hidden":
        bs = cfg.training.eval_batch_size
        sets = {n: TensorDataset("hidden", hidden_states(model, clean[n], collator, bs, plan.cut - 1, cfg.training.precision), targets[n]) for n in SPLITS}  # fmt: skip

        def forward(m, batch):
            return m.head(run_from(m.backbone, batch["hidden"], None, plan.cut))  # (B, D) -> (B, C)

        return model, forward, sets, sets
    return model, lambda m, b: m(pixel_values=b["pixel_values"]).logits, data, clean
