"""Continuing a run from its newest checkpoint, and writing the checkpoint a later run continues from.

:mod:`transferkit.training.checkpoint` stores and finds the files; this module says what goes into them
(weights, best weights, optimizer, scheduler, loop counters, history, the strategy's own state) and how a
resumed run puts it back, so that it ends exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from transferkit.strategies.base import StrategyPlan
from transferkit.training.checkpoint import (
    checkpoint_problem,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from transferkit.training.stages import Stages
from transferkit.training.state import LoopState, TrainResult

log = logging.getLogger("transferkit")


def newest_checkpoint(folder: Path | None) -> Path | None:
    """The newest sound checkpoint in ``folder``; None when there is none (or no folder).

    A newer one that is cut short, changed since it was written or missing its marker (see
    :func:`~transferkit.training.checkpoint.checkpoint_problem`) is skipped with a one-line warning, and
    the one before it is tried: the run then continues from an earlier step and still ends the same.
    """
    for path in reversed(list_checkpoints(folder) if folder is not None else []):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning(f"skipping checkpoint {path}: {problem}; trying the one before it")
    return None


@dataclass
class Resumed:
    """What a checkpoint gives back besides the weights and the result's fields."""

    state: LoopState
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    best_weights: dict[str, torch.Tensor] | None
    rng: dict[str, Any]  # restored by the loop once the epoch's loader has drawn its seed


def resume_from(
    path: Path,
    model: torch.nn.Module,
    stages: Stages,
    plan: StrategyPlan,
    result: TrainResult,
    patience: int | None,
) -> Resumed:
    """Loads checkpoint ``path`` into ``model``, the stage's fresh optimizer and scheduler, and ``result``.

    The stage entries before the saved stage are replayed (deterministic) so that the trainable set and the
    optimizer's parameter groups are the interrupted run's, then every state is loaded over them.
    ``patience`` (the schedule's) tells whether a checkpoint older than the ``stopped`` flag had stopped.
    """
    weights, best_weights, saved = load_checkpoint(path)
    loop = saved["loop"]
    state = LoopState.from_checkpoint(loop["state"], patience)
    stages.replay(state.stage)
    optimizer, scheduler = stages.enter(state.stage)
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    result.history = loop["history"]
    result.best_metric, result.best_step = loop["best_metric"], loop["best_step"]
    result.train_samples, result.train_tokens = loop["train_samples"], loop["train_tokens"]
    result.resumed_from = state.step
    if plan.load_state_dict is not None and "strategy" in loop:
        plan.load_state_dict(loop["strategy"])
    return Resumed(state, optimizer, scheduler, best_weights, saved["rng"])


def write_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    state: LoopState,
    result: TrainResult,
    best_weights: dict[str, torch.Tensor] | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    plan: StrategyPlan,
    keep: int,
) -> None:
    """Writes ``folder/step-N`` for the run as it stands (and keeps the newest ``keep``)."""
    weights = model.state_dict()
    loop_state = {
        "state": vars(state).copy(), "history": result.history, "best_metric": result.best_metric,
        "best_step": result.best_step, "train_samples": result.train_samples, "train_tokens": result.train_tokens,
    }  # fmt: skip
    if plan.state_dict is not None:
        loop_state["strategy"] = plan.state_dict()
    save_checkpoint(folder, state.step, weights, best_weights, optimizer, scheduler, loop_state, keep)
