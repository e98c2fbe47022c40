"""The training loop: one readable function on Hugging Face Accelerate.

prepare -> for each step: forward, loss, backward, clip, step, schedule -> evaluate -> keep the best
(early stopping with patience) -> restore the best at the end. Runs unchanged under ``accelerate launch``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset

from transferkit.config import TrainingConfig
from transferkit.data.text import Collator, LengthGroupedBatchSampler
from transferkit.evaluation import is_better
from transferkit.strategies.base import StrategyPlan
from transferkit.training.inference import forward_in_order, ordered_loader
from transferkit.training.losses import compute_loss
from transferkit.training.optim import build_optimizer, build_scheduler
from transferkit.training.progress import TrainProgress

Forward = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
Evaluate = Callable[[torch.Tensor], dict]


@dataclass
class TrainResult:
    """What the loop did: history of evaluations, the best score and throughput."""

    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    steps: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_samples: int = 0
    train_tokens: int = 0

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else 0.0


class JsonlLogger:
    """Step and epoch records, to a JSONL file and (optionally) TensorBoard."""

    def __init__(self, log_dir: Path | None, tensorboard: bool, enabled: bool):
        self.file = None
        self.writer = None
        if log_dir is None or not enabled:
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(log_dir / "train_log.jsonl", "a", buffering=1)  # noqa: SIM115 (closed in close())
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir / "tensorboard"))

    def log(self, record: dict, step: int) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
        if self.writer:
            for key, value in _flatten(record).items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.writer:
            self.writer.close()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def train_loop(
    module: torch.nn.Module,
    forward: Forward,
    plan: StrategyPlan,
    train_set: Dataset,
    val_set: Dataset | None,
    collator: Collator,
    evaluate: Evaluate,
    cfg: TrainingConfig,
    problem: str,
    metric: str,
    class_weights: torch.Tensor | None = None,
    log_dir: Path | None = None,
    tensorboard: bool = True,
    accelerator: Accelerator | None = None,
    frozen: torch.nn.Module | None = None,
) -> TrainResult:
    """Trains ``module`` with the strategy's parameter groups and restores the best evaluation.

    Args:
        module: What trains (the whole model, or only the head over cached features).
        forward: ``forward(module, batch) -> (B, C) logits``.
        plan: The strategy's plan (parameter groups, frozen trunk).
        train_set / val_set: Examples (tokens or cached features) with labels.
        collator: Pads / stacks a batch.
        evaluate: Turns (N, C) validation logits into a metrics dict.
        cfg: Training settings.
        problem: "single_label", "multi_label" or "regression".
        metric: Validation metric that picks the best state.
        class_weights: Optional (C,) loss weights.
        log_dir: Folder for ``train_log.jsonl`` and TensorBoard files.
        accelerator: An existing Accelerator (one is made otherwise).
        frozen: A frozen sub-module kept in eval mode while ``module`` trains (no dropout in frozen parts).

    Returns:
        A :class:`TrainResult`; ``module`` holds the best weights on return.
    """
    accelerator = accelerator or Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps)
    set_seed(cfg.seed)
    sampler = LengthGroupedBatchSampler(train_set.lengths, cfg.batch_size, cfg.seed, group_by_length=cfg.group_by_length)
    train_loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collator)
    optimizer = build_optimizer(plan.param_groups)
    steps_per_epoch = max(1, math.ceil(len(train_loader) / cfg.gradient_accumulation_steps))
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    module, optimizer, train_loader, scheduler = accelerator.prepare(module, optimizer, train_loader, scheduler)
    val_loader = accelerator.prepare_data_loader(ordered_loader(val_set, collator, cfg.eval_batch_size)) if val_set is not None else None
    eval_every = max(1, steps_per_epoch // cfg.evaluations_per_epoch)

    logger = JsonlLogger(log_dir, tensorboard, accelerator.is_main_process)
    progress = TrainProgress(total_steps, enabled=cfg.progress and accelerator.is_local_main_process)
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals = 0
    step, epoch, running, running_n = 0, 0, 0.0, 0
    trainable = [n for n, p in accelerator.unwrap_model(module).named_parameters() if p.requires_grad]

    def run_eval() -> bool:
        """Evaluates, keeps the best state; returns True when patience is exhausted."""
        nonlocal best_state, bad_evals
        if val_loader is None:
            return False
        module.eval()
        logits = forward_in_order(lambda b: forward(module, b), val_set, collator, cfg.eval_batch_size, accelerator, loader=val_loader)
        module.train()
        if frozen is not None:
            frozen.eval()
        scores = evaluate(logits)
        record = {"step": step, "epoch": round(step / steps_per_epoch, 4), "train_loss": running / max(running_n, 1), "validation": scores}
        result.history.append(record)
        logger.log(record, step)
        value = scores.get(metric)
        if value is None:
            raise KeyError(f"metric {metric!r} is not among the validation metrics: {sorted(k for k, v in scores.items() if not isinstance(v, dict | list))}")
        progress.note(f"val {metric} {value:.4f}")
        if is_better(metric, value, result.best_metric):
            result.best_metric, result.best_step, bad_evals = value, step, 0
            state = accelerator.unwrap_model(module).state_dict()
            best_state = {k: state[k].detach().clone() for k in trainable if k in state}
            return False
        bad_evals += 1
        return cfg.early_stopping_patience is not None and bad_evals >= cfg.early_stopping_patience

    module.train()
    if frozen is not None:
        frozen.eval()
    start = time.perf_counter()
    eval_seconds = 0.0
    done = False
    while not done:
        sampler.set_epoch(epoch)
        for batch in train_loader:
            with accelerator.accumulate(module):
                labels = batch.pop("labels")
                logits = forward(module, batch)
                loss = compute_loss(logits, labels, problem, class_weights)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            n = len(labels)
            result.train_samples += n * accelerator.num_processes
            if "attention_mask" in batch:
                result.train_tokens += int(batch["attention_mask"].sum()) * accelerator.num_processes
            running += loss.item() * n
            running_n += n
            if not accelerator.sync_gradients:
                continue
            step += 1
            progress.advance(loss=running / running_n, samples=n * cfg.gradient_accumulation_steps * accelerator.num_processes)
            if step % cfg.log_every_steps == 0:
                logger.log({"step": step, "loss": running / running_n, "lr": scheduler.get_last_lr()[0]}, step)
            if step % eval_every == 0 or step == total_steps:
                t0 = time.perf_counter()
                stop = run_eval()
                eval_seconds += time.perf_counter() - t0
                running, running_n = 0.0, 0
                if stop:
                    result.stopped_early = True
                    done = True
                    break
            if step >= total_steps:
                done = True
                break
        epoch += 1
    result.train_seconds = time.perf_counter() - start - eval_seconds
    result.steps = step
    progress.close()
    logger.close()
    if best_state is not None:
        accelerator.unwrap_model(module).load_state_dict(best_state, strict=False)
    return result


def label_array(labels: list, problem: str) -> np.ndarray:
    """Targets as an array: class ids, multi-hot rows or floats."""
    return np.asarray(labels, dtype=np.float32 if problem != "single_label" else np.int64)
