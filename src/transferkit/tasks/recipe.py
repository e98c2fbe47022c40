"""The steps every task's recipe shares, written once.

A task's ``fit.py`` reads top to bottom as its recipe and calls these for the parts that do not depend on
the task:

1. :func:`begin` -- threads and the clock (the accelerator is made on first use);
2. :func:`open_run` -- ``strategy: auto`` decides (from facts the task measures), the run folder opens or
   resumes, the decision is remembered for a resume;
3. :func:`probe_and_baseline` -- the linear probe on frozen features, the pretrained baseline it scores, the
   probe loaded into the head where the strategy starts from it;
4. :func:`train` -- the shared training loop (or nothing, for a closed-form probe);
5. :func:`after_training` -- what trained by the end, the adapter merged in place before the final scores;
6. :func:`final_scores` -- validation and test through the trained module;
7. :func:`guard` -- the better of the fine-tuned model and the pretrained baseline is the run's model;
8. :func:`record` -- the metrics block every task writes;
9. :func:`write_run` / :func:`finish` -- the run folder (predictions, manifest, model, plots, card,
   ``metrics.json`` last) on the main process, then every process meets.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from transferkit import artifacts, hardware
from transferkit.artifacts import DATAFRAME, RunResult
from transferkit.config import RunConfig
from transferkit.errors import RunError
from transferkit.evaluation import save_confusion_matrix, save_training_curves
from transferkit.evaluation.guard import keep_better
from transferkit.inference import forward_in_order
from transferkit.manifest import RunManifest, write_manifest
from transferkit.strategies import StrategyPlan, count_parameters
from transferkit.strategies.cache import frozen_features
from transferkit.strategies.probe import baseline_block, fit_probe, load_into_head, wants_probe
from transferkit.training import strategy_choice as auto
from transferkit.training.loop import TrainResult, make_accelerator, train_loop
from transferkit.training.losses import balanced_class_weights

EVALUATED = ("validation", "test")


@dataclass
class Run:
    """One fit in progress: its settings, the accelerator, the run folder and what ``auto`` decided."""

    cfg: RunConfig
    resume: bool
    started: float
    run_dir: Path | None = None
    decision: dict | None = None

    @cached_property
    def accelerator(self):
        """Made on first use, so bad data fails before the precision is chosen and logged."""
        return make_accelerator(self.cfg.training)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def begin(cfg: RunConfig, resume: bool) -> Run:
    """Starts the clock and sets torch's threads (``training.num_threads``)."""
    started = time.perf_counter()
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    return Run(cfg, resume, started)


def check_frames(cfg: RunConfig, frames: dict | None) -> None:
    """A run trained from pandas DataFrames (its saved config says ``<DataFrame>``) resumes only with them."""
    if cfg.data.train == DATAFRAME and not (frames and "train" in frames):
        raise RunError(
            "this run was trained from pandas DataFrames: pass frames={'train': ...} (Python API) to resume it"
        )


def open_run(run: Run, facts: Callable[[], auto.Facts]) -> RunConfig:
    """Resolves ``strategy: auto`` (``facts`` is measured only then), opens or resumes the run folder and
    remembers the decision there; returns the concrete config (``run.cfg`` too)."""
    run.cfg, decision = auto.resolve(run.cfg, facts)
    run.run_dir = artifacts.open_run(run.cfg, run.accelerator, run.resume)
    run.decision = auto.remember(run.run_dir, decision, run.main)
    return run.cfg


def probe_and_baseline(
    run: Run,
    model: torch.nn.Module,
    plan: StrategyPlan,
    features: dict | None,
    examples: Callable[[], tuple],
    problem: str,
    num_classes: int,
    score: Callable[[Any, str], dict],
    what: str = "features",
) -> tuple[Any, dict]:
    """The linear probe on frozen ``features`` (where the strategy or the baseline wants one) and the
    metrics it starts: ``{"pretrained_baseline": ...}`` when ``evaluation.pretrained_baseline``.

    Args:
        examples: ``() -> (x_train, y_train, x_validation, y_validation)`` the probe is fitted on.
        score: ``(probe, split) -> scores`` of the probe on a split (the baseline's figures).
        what: What the baseline is a probe on, as its block says.

    Returns:
        (probe or None, metrics). The probe is loaded into the head when the strategy starts from it
        (``lp-ft``, ``head``, ``gradual``) or is it (``linear-probe``).
    """
    cfg, probe, metrics = run.cfg, None, {}
    if features is not None and wants_probe(plan, cfg):
        probe = fit_probe(*examples(), problem, num_classes, cfg.training.seed)
    if cfg.evaluation.pretrained_baseline and probe is not None:
        metrics["pretrained_baseline"] = baseline_block(probe, {s: score(probe, s) for s in EVALUATED}, what)
    if plan.probe_init or plan.closed_form:
        load_into_head(model, probe)
    return probe, metrics


def example_weights(cfg: RunConfig, targets, num_classes: int) -> dict:
    """``class_weights`` / ``sample_weights`` for :func:`train` from ``training.class_weights`` and
    ``training.sampling`` (single-label targets: balanced per class)."""
    if cfg.training.class_weights != "auto" and cfg.training.sampling != "balanced":
        return {}
    per_class = balanced_class_weights(targets, num_classes)
    return {
        "class_weights": per_class if cfg.training.class_weights == "auto" else None,
        "sample_weights": per_class.numpy()[targets].tolist()
        if cfg.training.sampling == "balanced"
        else None,
    }


def train(
    run: Run,
    plan: StrategyPlan,
    probe,
    module: torch.nn.Module,
    forward: Callable,
    train_set,
    validation_set,
    collator,
    evaluate: Callable,
    problem: str,
    metric: str,
    **weights,
) -> tuple[TrainResult, torch.nn.Module]:
    """Runs the shared training loop on ``module`` (or nothing: a closed-form probe is already the model);
    returns the result and the unwrapped module."""
    if plan.closed_form:
        return TrainResult(best_metric=probe.validation_score), module
    cfg, run_dir = run.cfg, run.run_dir
    result = train_loop(
        module, forward, plan, train_set, validation_set, collator, evaluate, cfg.training, problem, metric,
        log_dir=run_dir / "logs", checkpoint_dir=run_dir / "checkpoints", resume=run.resume,
        tensorboard=cfg.output.tensorboard, accelerator=run.accelerator, pretrained=cfg.backbone.pretrained,
        **weights,
    )  # fmt: skip
    return result, run.accelerator.unwrap_model(module)


def after_training(run: Run, model: torch.nn.Module, plan: StrategyPlan, trainable: int) -> tuple[int, bool]:
    """(trainable parameters by the end, whether the adapter was merged): a staged strategy counts what
    trained last; a LoRA-style adapter is merged in place before the final scores (``strategy.merge``)."""
    if plan.stages:
        trainable = count_parameters(model)[0]
    return trainable, plan.merge_adapter(model, run.run_dir, run.cfg.output.save_model, run.main)


def final_scores(
    run: Run,
    module: torch.nn.Module,
    forward: Callable,
    sets: dict,
    collator,
    score: Callable[[torch.Tensor, str], dict],
    by_tokens: bool = True,
) -> dict:
    """``{"test": ..., "validation": ...}``: ``score(outputs, split)`` of the module's outputs on each split
    (batches capped at ``training.eval_max_tokens`` when ``by_tokens``)."""
    training = run.cfg.training
    module.eval()
    out = {}
    for split in EVALUATED:
        outputs = forward_in_order(
            lambda b: forward(module, b), sets[split], collator, training.eval_batch_size, run.accelerator,
            max_tokens=training.eval_max_tokens if by_tokens else None,
        )  # fmt: skip
        out[split] = score(outputs, split)
    return {"test": out["test"], "validation": out["validation"]}


def guard(
    run: Run,
    metrics: dict,
    metric: str,
    baseline: Callable[[], torch.nn.Module],
    model: torch.nn.Module,
    plan: StrategyPlan,
    merged: bool,
    rescore: Callable[[Any], dict] | None = None,
    min_delta: float = 0.0,
) -> tuple[torch.nn.Module, StrategyPlan, bool]:
    """Keeps the better of the fine-tuned model and the pretrained baseline (see
    :func:`~transferkit.evaluation.guard.keep_better`; ``min_delta``: the loop's, ``TrainResult.min_delta``);
    returns the run's (model, plan, merged)."""
    fallback = keep_better(metrics, metric, run.cfg.evaluation.keep_better, baseline, rescore, min_delta)
    if fallback is None:
        return model, plan, merged
    shutil.rmtree(run.run_dir / "adapter", ignore_errors=True)  # the discarded model's adapter
    return fallback, StrategyPlan(param_groups=[]), False  # the baseline: nothing strategy-specific to save


def record(
    run: Run,
    metrics: dict,
    *,
    backbone: str,
    metric: str,
    result: TrainResult,
    trainable: int,
    total: int,
    features: dict | None = None,
    task_fields: dict | None = None,
    training: dict | None = None,
) -> dict:
    """Adds the block every task writes to ``metrics.json``: auto's decision, the feature store's use, the
    parameters, strategy, backbone, task (then ``task_fields``), the best validation metric and
    ``training`` (the loop's summary, ``training``'s task-specific figures, the precision)."""
    cfg = run.cfg
    if run.decision is not None:
        metrics["auto"] = run.decision
    if features is not None and frozen_features.store is not None:  # what training.feature_store gave
        metrics["feature_store"] = frozen_features.store
    precision = hardware.precision_of(run.accelerator).record()
    metrics.update(
        trainable_parameters=trainable, total_parameters=total, strategy=cfg.strategy.name, backbone=backbone,
        task=cfg.task.type, **(task_fields or {}),
        best_validation_metric={"name": metric, "value": result.best_metric, "step": result.best_step},
        training=result.summary(time.perf_counter() - run.started, **(training or {}), precision=precision),
    )  # fmt: skip
    return metrics


def write_run(
    run_dir: Path,
    cfg: RunConfig,
    metrics: dict,
    manifest: RunManifest,
    model: torch.nn.Module,
    plan: StrategyPlan,
    merged: bool,
    history: list,
    save_model: Callable[[torch.nn.Module], Any],
    write_card: Callable[[Any], None],
) -> None:
    """Writes the run folder: test predictions first (everything below reads plain metrics), the manifest,
    the strategy's extra files, the model (``save_model(model) -> saved``, when ``output.save_model``), the
    confusion matrix and training curves, the card (``write_card(saved)``), ``metrics.json`` last."""
    artifacts.save_predictions(run_dir, metrics)
    write_manifest(run_dir, manifest)
    if plan.save_extra is not None and not merged:
        plan.save_extra(model, run_dir)
    saved = save_model(plan.plain_model(model, merged)) if cfg.output.save_model else None
    cm = metrics["test"].get("confusion_matrix")
    if cm:
        artifacts.save_json(run_dir / "confusion_matrix.json", cm)
        save_confusion_matrix(cm, run_dir / "confusion_matrix.png", title=f"{run_dir.name}: test")
    if history:
        save_training_curves(history, run_dir / "training_curves.png")
    write_card(saved)
    artifacts.save_json(run_dir / "metrics.json", metrics)


def finish(run: Run, metrics: dict, write: Callable[[], None]) -> RunResult:
    """``write()`` the run folder on the main process; every process waits for it; the run's result."""
    if run.main:
        write()
    run.accelerator.wait_for_everyone()
    return RunResult(run.run_dir, metrics)
