"""Text classification's recipe (single-label, multi-label, regression): data -> backbone -> strategy ->
training -> evaluation -> guard -> run folder. ``transferkit.fit`` reaches it through the task's spec.
"""

from __future__ import annotations

import logging

import pandas as pd
import torch
from transformers import AutoTokenizer

from transferkit import artifacts
from transferkit.artifacts import DATAFRAME, SPLITS, RunResult
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import run_from
from transferkit.config import RunConfig
from transferkit.data import DatasetSplits, load_splits
from transferkit.data.text import Collator
from transferkit.evaluation import primary_metric
from transferkit.evaluation.scoring import score
from transferkit.manifest import RunManifest, TextFields
from transferkit.remote_code.modeling_transferkit import pool
from transferkit.strategies import count_parameters
from transferkit.strategies.base import plan_for
from transferkit.strategies.cache import extract_hidden, frozen_features
from transferkit.strategies.probe import baseline_model, wants_features
from transferkit.tasks import recipe
from transferkit.tasks.text_classification.card import write_text_card
from transferkit.tasks.text_classification.data import FeatureDataset, HiddenDataset, targets_and_data
from transferkit.tasks.text_classification.model import build_model
from transferkit.training import strategy_choice as auto

log = logging.getLogger("transferkit")


def fit_text_classification(
    cfg: RunConfig, frames: dict[str, pd.DataFrame] | None, resume: bool = False
) -> RunResult:
    """Text classification: the core task's fit (see :func:`fit`)."""
    run = recipe.begin(cfg, resume)
    problem = cfg.task.problem
    recipe.check_frames(cfg, frames)
    data_cfg = cfg.data  # the saved config keeps the DataFrame placeholder, so it loads back
    if cfg.data.train == DATAFRAME:
        data_cfg = cfg.data.model_copy(update={"train": None})
    splits: DatasetSplits = load_splits(data_cfg, problem, frames)
    spec = resolve_backbone(cfg.backbone)

    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    labels = splits.labels
    model = build_model(spec, cfg, labels)
    targets, data = targets_and_data(cfg, splits, tokenizer)
    collator = Collator(tokenizer, torch.long if problem == "single_label" else torch.float32)
    cfg = recipe.open_run(run, lambda: auto.measure(
        cfg, model, lambda m, b: m(**b), data["train"], collator,
        splits.train["label"].tolist() if problem != "regression" else None,
        len(data["validation"]) + len(data["test"]),
    ))  # fmt: skip
    plan = plan_for(model, cfg.strategy, cfg.training, run.accelerator.num_processes)
    trainable, total = count_parameters(model)

    # Frozen pretrained features: the cache of frozen strategies, the probe of LP-FT and the baseline share them.
    features = None
    if wants_features(plan, cfg):
        keys = {n: getattr(splits, n)["text"].tolist() for n in SPLITS}
        features = frozen_features(model, data, collator, cfg, plan, run.run_dir, run.accelerator, keys)
    probe, metrics = recipe.probe_and_baseline(
        run, model, plan, features,
        lambda: (features["train"], targets["train"], features["validation"], targets["validation"]),
        problem, model.config.num_labels,
        lambda probe, s: score(probe.logits(features[s]), targets[s], problem, labels, True),
    )  # fmt: skip

    module, forward, sets = _training_view(model, plan, data, features, targets, collator, cfg)
    metric = cfg.training.metric_for_best or primary_metric(problem)[0]
    weights = recipe.example_weights(cfg, targets["train"], len(labels)) if problem == "single_label" else {}
    result, module = recipe.train(
        run, plan, probe, module, forward, sets["train"], sets["validation"], collator,
        lambda logits: score(logits, targets["validation"], problem, labels), problem, metric, **weights,
    )  # fmt: skip
    trainable, merged = recipe.after_training(run, model, plan, trainable)
    scores = recipe.final_scores(
        run,
        module,
        forward,
        sets,
        collator,
        lambda logits, s: score(logits, targets[s], problem, labels, True),
    )
    metrics = {**scores, **metrics}
    model, plan, merged = recipe.guard(
        run, metrics, metric, lambda: baseline_model(lambda c: build_model(spec, c, labels), cfg, probe),
        model, plan, merged, min_delta=result.guard_min_delta,
    )  # fmt: skip
    recipe.record(
        run, metrics, backbone=spec.name, metric=metric, result=result, trainable=trainable, total=total,
        features=features, task_fields={"problem": problem},
    )  # fmt: skip
    return recipe.finish(run, metrics, lambda: write_outputs(
        run.run_dir, cfg, model, plan, merged, tokenizer, metrics, result.history, splits, spec, trainable, total
    ))  # fmt: skip


def write_outputs(
    run_dir, cfg, model, plan, merged, tokenizer, metrics, history, splits, spec, trainable, total
) -> None:
    """A text-classification run folder (also what distillation writes for its student)."""
    info = {
        "backbone": spec.name, "labels": splits.labels, "source": splits.source, "pooling": spec.pooling,
        "sizes": {n: len(getattr(splits, n)) for n in SPLITS},
        "trainable_parameters": trainable, "total_parameters": total,
    }  # fmt: skip
    manifest = RunManifest(
        task=cfg.task.type, problem=cfg.task.problem, labels=splits.labels, max_length=cfg.backbone.max_length,
        text=TextFields(pooling=spec.pooling), precision=metrics["training"]["precision"]["name"],
    )  # fmt: skip
    recipe.write_run(
        run_dir, cfg, metrics, manifest, model, plan, merged, history,
        lambda final: artifacts.save_model(final, tokenizer, run_dir),
        lambda saved: write_text_card(run_dir, cfg, metrics, info),
    )  # fmt: skip


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
