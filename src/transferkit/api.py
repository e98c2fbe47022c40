"""The Python API behind ``transferkit fit``: data -> backbone -> strategy -> training -> evaluation -> run folder.

Example:
    >>> import transferkit
    >>> run = transferkit.fit(dataset="rotten_tomatoes", strategy="head", epochs=1)  # doctest: +SKIP
    >>> run.metrics["test"]["accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from transformers import AutoTokenizer

from transferkit import artifacts
from transferkit.backbones import resolve_backbone
from transferkit.config import RunConfig, load_config
from transferkit.data import DatasetSplits, load_splits
from transferkit.data.text import Collator, FeatureDataset, TokenizedDataset
from transferkit.evaluation import primary_metric, save_confusion_matrix, save_training_curves
from transferkit.evaluation.scoring import score
from transferkit.modeling import build_model
from transferkit.strategies import STRATEGIES, count_parameters, strategy_settings
from transferkit.strategies.cache import extract_features
from transferkit.strategies.probe import fit_probe
from transferkit.training.inference import forward_in_order
from transferkit.training.losses import balanced_class_weights
from transferkit.training.loop import train_loop

log = logging.getLogger("transferkit")


@dataclass
class RunResult:
    """A finished run: its folder and its metrics (the content of ``metrics.json``)."""

    run_dir: Path
    metrics: dict


def encode_targets(frame: pd.DataFrame, problem: str, labels: list[str]) -> np.ndarray:
    """Targets in head order: class ids, multi-hot rows or floats."""
    if problem == "regression":
        return frame["label"].astype(np.float32).to_numpy()
    index = {name: i for i, name in enumerate(labels)}
    if problem == "multi_label":
        out = np.zeros((len(frame), len(labels)), dtype=np.float32)
        for row, names in enumerate(frame["label"]):
            out[row, [index[n] for n in names]] = 1.0
        return out
    return frame["label"].map(index).to_numpy(dtype=np.int64)


def fit(config: RunConfig | str | Path | None = None, *, overrides: list[str] | None = None, frames: dict[str, pd.DataFrame] | None = None, **quick) -> RunResult:
    """Fine-tunes a backbone on labelled examples, evaluates it and writes a run folder.

    Args:
        config: A RunConfig, a YAML path, or None for defaults.
        overrides: ``key.path=value`` strings.
        frames: pandas DataFrames for "train" / "validation" / "test" instead of files.
        **quick: Shortcuts: dataset, train, validation, test, backbone, strategy, epochs, seed, output.

    Returns:
        The run folder and its metrics.
    """
    if not isinstance(config, RunConfig):
        shortcuts = {
            "dataset": "data.dataset", "train": "data.train", "validation": "data.validation", "test": "data.test",
            "backbone": "backbone.name", "strategy": "strategy.name", "epochs": "training.epochs",
            "seed": "training.seed", "output": "output.dir",
        }  # fmt: skip
        extra = [f"{shortcuts[k]}={v}" for k, v in quick.items() if v is not None]
        if frames and "train" in frames and not any(o.startswith("data.") for o in extra):
            extra.append("data.train=<DataFrame>")
        config = load_config(config, extra + list(overrides or []))
    return _fit(config, frames)


def _fit(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None) -> RunResult:
    t_start = time.perf_counter()
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    problem = cfg.task.problem
    if frames and cfg.data.train == "<DataFrame>":
        cfg.data.train = None
    splits: DatasetSplits = load_splits(cfg.data, problem, frames)
    spec = resolve_backbone(cfg.backbone)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.training.gradient_accumulation_steps)
    main = accelerator.is_main_process
    run_dir = Path(cfg.output.dir) if cfg.output.dir else artifacts.default_run_dir(cfg)
    if main:
        artifacts.create_run_dir(run_dir)
        artifacts.save_config(cfg, run_dir)
    accelerator.wait_for_everyone()

    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    labels = splits.labels
    model = build_model(spec, cfg, labels)
    targets = {name: encode_targets(getattr(splits, name), problem, labels) for name in ("train", "validation", "test")}
    data = {
        name: TokenizedDataset(tokenizer, getattr(splits, name)["text"].tolist(), targets[name], cfg.backbone.max_length)
        for name in ("train", "validation", "test")
    }
    label_dtype = torch.long if problem == "single_label" else torch.float32
    collator = Collator(tokenizer, label_dtype)

    strategy = STRATEGIES.get(cfg.strategy.name)
    plan = strategy.apply(model, strategy_settings(cfg.strategy), cfg.training)
    trainable, total = count_parameters(model)
    log.info("strategy %s: %s of %s parameters train", cfg.strategy.name, f"{trainable:,}", f"{total:,}")

    # Frozen pretrained features: the cache of frozen strategies and the pretrained baseline share them.
    features = None
    if plan.cache == "features" or cfg.evaluation.pretrained_baseline:
        features = {
            name: extract_features(model, ds, collator, cfg.training.eval_batch_size, plan.cache_location, run_dir / "cache" / f"{name}.npy", accelerator)
            for name, ds in data.items()
        }
    metric, _ = primary_metric(problem)
    metric = cfg.training.metric_for_best or metric
    metrics: dict = {}
    if cfg.evaluation.pretrained_baseline:
        probe = fit_probe(features["train"], targets["train"], features["validation"], targets["validation"], problem, model.config.num_labels, cfg.training.seed)
        metrics["pretrained_baseline"] = {
            split: score(probe.logits(features[split]), targets[split], problem, labels) for split in ("validation", "test")
        } | {"method": f"linear probe on frozen pretrained features (L2 C={probe.c})"}

    class_weights = None
    if cfg.training.class_weights == "auto" and problem == "single_label":
        class_weights = balanced_class_weights(targets["train"], len(labels))

    if plan.cache == "features":
        module, frozen = model.head, None
        sets = {name: FeatureDataset(features[name], targets[name]) for name in data}

        def forward(m, batch):
            return m(batch["features"])
    else:
        module, frozen = model, (model.backbone if plan.frozen_trunk else None)
        sets = data

        def forward(m, batch):
            return m(**batch).logits

    def evaluate(logits):
        return score(logits, targets["validation"], problem, labels)

    result = train_loop(
        module, forward, plan, sets["train"], sets["validation"], collator, evaluate, cfg.training, problem, metric,
        class_weights=class_weights, log_dir=run_dir / "logs", tensorboard=cfg.output.tensorboard, accelerator=accelerator, frozen=frozen,
    )  # fmt: skip
    module = accelerator.unwrap_model(module)
    module.eval()
    for split in ("validation", "test"):
        logits = forward_in_order(lambda b: forward(module, b), sets[split], collator, cfg.training.eval_batch_size, accelerator)
        metrics[split] = score(logits, targets[split], problem, labels)
    metrics = {"test": metrics.pop("test"), "validation": metrics.pop("validation"), **metrics}
    metrics.update(
        trainable_parameters=trainable,
        total_parameters=total,
        strategy=cfg.strategy.name,
        backbone=spec.name,
        task=cfg.task.type,
        problem=problem,
        best_validation_metric={"name": metric, "value": result.best_metric, "step": result.best_step},
        training={
            "steps": result.steps,
            "stopped_early": result.stopped_early,
            "train_seconds": round(result.train_seconds, 3),
            "train_samples_per_second": round(result.samples_per_second, 2),
            "train_tokens": result.train_tokens,
            "wall_seconds": round(time.perf_counter() - t_start, 3),
        },
    )
    if main:
        _write_outputs(run_dir, cfg, model, tokenizer, metrics, result.history, splits, spec, labels, trainable, total)
    accelerator.wait_for_everyone()
    return RunResult(run_dir, metrics)


def _write_outputs(run_dir, cfg, model, tokenizer, metrics, history, splits, spec, labels, trainable, total) -> None:
    artifacts.save_json(run_dir / "labels.json", {"labels": labels, "task": cfg.task.type, "problem": cfg.task.problem, "pooling": spec.pooling, "max_length": cfg.backbone.max_length})
    if cfg.output.save_model:
        artifacts.save_model(model, tokenizer, run_dir)
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
    artifacts.write_model_card(run_dir, cfg, metrics, info)
    artifacts.save_json(run_dir / "metrics.json", metrics)
