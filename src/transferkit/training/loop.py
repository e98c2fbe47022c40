"""The training loop: one readable function on Hugging Face Accelerate.

prepare -> for each step: forward, loss, backward, clip, step, schedule -> evaluate -> checkpoint -> keep
the best (early stopping with patience) -> restore the best at the end. Strategies with stages (gradual
unfreezing) get a fresh optimizer and warmup at each stage. Runs unchanged under ``accelerate launch``, and
continues from its newest checkpoint after a kill (``resume=True``) with the same result.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset

from transferkit.config import TrainingConfig
from transferkit.data.text import Collator, LengthGroupedBatchSampler
from transferkit.evaluation import is_better
from transferkit.inference import forward_in_order, ordered_loader, single_process_budget
from transferkit.strategies.base import Stage, StrategyPlan
from transferkit.training.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from transferkit.training.logger import RunLogger
from transferkit.training.losses import compute_loss
from transferkit.training.optim import build_optimizer, build_scheduler
from transferkit.training.progress import TrainProgress
from transferkit.training.schedule import Schedule, batch_size_for, plan_schedule

Forward = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
Evaluate = Callable[[torch.Tensor], dict]
log = logging.getLogger("transferkit")


def make_accelerator(cfg: TrainingConfig) -> Accelerator:
    """An Accelerator; on a machine without an accelerator device it runs on CPU, and several processes
    started by ``accelerate launch --multi_gpu`` or ``torchrun`` then train with DDP over gloo."""
    has_device = (
        torch.cuda.is_available()
        or (hasattr(torch, "xpu") and torch.xpu.is_available())
        or torch.backends.mps.is_available()
    )
    return Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps, cpu=not has_device)


@dataclass
class TrainResult:
    """What the loop did: history of evaluations, the best score and throughput."""

    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    steps: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None
    train_seconds: float = 0.0
    train_samples: int = 0
    train_tokens: int = 0
    schedule: dict = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else 0.0


@dataclass
class _LoopState:
    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    stage: int = 0
    bad_evals: int = 0
    running: float = 0.0
    running_n: int = 0


def _stage_starts(stages: list[Stage], steps_per_epoch: int) -> list[int]:
    return [int(round(s.start_epoch * steps_per_epoch)) for s in stages]


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
    sample_weights: list[float] | None = None,
    log_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    tensorboard: bool = True,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Trains ``module`` as the strategy's plan says and restores the best evaluation.

    Args:
        module: What trains (the whole model, only the head over cached features, or the top of the model).
        forward: ``forward(module, batch) -> (B, C) logits``.
        plan: The strategy's plan: parameter groups or stages, modules kept frozen.
        train_set / val_set: Examples (tokens or cached features) with labels.
        collator: Pads / stacks a batch.
        evaluate: Turns (N, C) validation logits into a metrics dict.
        cfg: Training settings.
        problem: "single_label", "multi_label" or "regression".
        metric: Validation metric that picks the best state.
        class_weights: Optional (C,) loss weights.
        sample_weights: Per-example sampling weights (class-balanced sampling).
        log_dir: Folder for ``train_log.jsonl`` and TensorBoard files.
        checkpoint_dir: Folder for checkpoints; None writes none.
        resume: Continue from the newest complete checkpoint in ``checkpoint_dir``.
        accelerator: An existing Accelerator (one is made otherwise).

    Returns:
        A :class:`TrainResult`; ``module`` holds the best weights on return.
    """
    accelerator = accelerator or make_accelerator(cfg)
    set_seed(cfg.seed)
    sampler = LengthGroupedBatchSampler(
        train_set.lengths,
        batch_size_for(cfg, len(train_set)),
        cfg.seed,
        group_by_length=cfg.group_by_length,
        weights=sample_weights,
    )
    train_loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collator)
    module, train_loader = accelerator.prepare(module, train_loader)  # distributed: each process gets a shard
    steps_per_epoch = max(1, math.ceil(len(train_loader) / cfg.gradient_accumulation_steps))
    schedule: Schedule = plan_schedule(
        cfg,
        len(train_set),
        steps_per_epoch,
        plan.cache == "features",
        len(val_set) if val_set is not None else None,
    )
    total_steps = schedule.total_steps
    if accelerator.is_main_process:
        log.info("schedule: %d optimizer steps (%s)", total_steps, schedule.rule)
    if plan.on_train_begin is not None:
        plan.on_train_begin(total_steps)
    stages = plan.stages or [Stage("train", 0.0, lambda: plan.param_groups)]
    starts = _stage_starts(stages, steps_per_epoch) + [total_steps]
    focal = cfg.focal_gamma if cfg.loss == "focal" and problem == "single_label" else None

    def enter_stage(i: int):
        groups = stages[i].enter()
        optimizer = build_optimizer(groups)
        # the scheduler is stepped by hand once per optimizer step: accelerate's prepared scheduler steps
        # once per process, which would run the schedule num_processes times too fast
        scheduler = build_scheduler(optimizer, cfg, max(1, starts[i + 1] - starts[i]))
        return accelerator.prepare(optimizer), scheduler

    raw = accelerator.unwrap_model(module)
    val_loader = (
        accelerator.prepare_data_loader(
            ordered_loader(
                val_set,
                collator,
                cfg.eval_batch_size,
                single_process_budget(cfg.eval_max_tokens, accelerator),
            )
        )
        if val_set is not None
        else None
    )
    eval_every = schedule.eval_every

    state = _LoopState()
    result = TrainResult(schedule=schedule.to_dict())
    best_state: dict[str, torch.Tensor] | None = None
    restored_rng = None
    checkpoint = (
        list_checkpoints(checkpoint_dir)[-1]
        if resume and checkpoint_dir is not None and list_checkpoints(checkpoint_dir)
        else None
    )
    if checkpoint is not None:  # replay stage entries (deterministic), then load every state
        weights, best_state, saved = load_checkpoint(checkpoint)
        state = _LoopState(**saved["loop"]["state"])
        for i in range(state.stage):
            stages[i].enter()
        optimizer, scheduler = enter_stage(state.stage)
        raw.load_state_dict(weights, strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        result.history = saved["loop"]["history"]
        result.best_metric, result.best_step = saved["loop"]["best_metric"], saved["loop"]["best_step"]
        result.train_samples, result.train_tokens = (
            saved["loop"]["train_samples"],
            saved["loop"]["train_tokens"],
        )
        result.resumed_from = state.step
        restored_rng = saved["rng"]
        if plan.load_state_dict is not None and "strategy" in saved["loop"]:
            plan.load_state_dict(saved["loop"]["strategy"])
    else:
        optimizer, scheduler = enter_stage(0)

    logger = RunLogger(log_dir, tensorboard, accelerator.is_main_process)
    progress = TrainProgress(
        total_steps, enabled=cfg.progress and accelerator.is_local_main_process, completed=state.step
    )

    def trainable_names() -> list[str]:
        return [n for n, p in raw.named_parameters() if p.requires_grad]

    def set_modes() -> None:
        module.train()
        for m in plan.frozen_modules:
            m.eval()

    def write_checkpoint() -> None:
        if checkpoint_dir is None or not accelerator.is_main_process:
            return
        weights = raw.state_dict()
        loop_state = {
            "state": vars(state).copy(), "history": result.history, "best_metric": result.best_metric,
            "best_step": result.best_step, "train_samples": result.train_samples, "train_tokens": result.train_tokens,
        }  # fmt: skip
        if plan.state_dict is not None:
            loop_state["strategy"] = plan.state_dict()
        save_checkpoint(
            checkpoint_dir,
            state.step,
            weights,
            best_state,
            optimizer,
            scheduler,
            loop_state,
            cfg.keep_checkpoints,
        )

    def run_eval() -> bool:
        """Evaluates and keeps the best state; returns True when patience is exhausted."""
        nonlocal best_state
        if val_loader is None:
            return False
        module.eval()
        logits = forward_in_order(
            lambda b: forward(module, b),
            val_set,
            collator,
            cfg.eval_batch_size,
            accelerator,
            loader=val_loader,
        )
        set_modes()
        scores = evaluate(logits)
        record = {
            "step": state.step,
            "epoch": round(state.step / steps_per_epoch, 4),
            "stage": stages[state.stage].name,
            "train_loss": state.running / max(state.running_n, 1),
            "validation": scores,
        }
        result.history.append(record)
        logger.log(record, state.step)
        value = scores.get(metric)
        if value is None:
            raise KeyError(
                f"metric {metric!r} is not among the validation metrics: {sorted(k for k, v in scores.items() if not isinstance(v, dict | list))}"
            )
        progress.note(f"val {metric} {value:.4f}")
        if is_better(metric, value, result.best_metric):
            result.best_metric, result.best_step, state.bad_evals = value, state.step, 0
            sd = raw.state_dict()
            # staged plans unfreeze more later: keep every weight, so the restore is exactly this evaluation's;
            # buffers too (BatchNorm running statistics move in training mode without being parameters)
            kept = {k for k, _ in raw.named_buffers()} | set(trainable_names())
            keep = sd.keys() if len(stages) > 1 else [k for k in sd if k in kept]
            best_state = {k: sd[k].detach().clone() for k in keep}
            return False
        state.bad_evals += 1
        return schedule.patience is not None and state.bad_evals >= schedule.patience

    set_modes()
    if plan.probe_init and checkpoint is None:
        # the head starts as the fitted probe: the start is a candidate, so training can only keep or improve
        # it on validation (LP-FT, and heads initialised from the probe)
        run_eval()
    start = time.perf_counter()
    eval_seconds = 0.0
    done = state.step >= total_steps
    while not done:
        sampler.set_epoch(state.epoch)
        if hasattr(train_set, "set_epoch"):  # per-epoch random inputs (image augmentation)
            train_set.set_epoch(state.epoch)
        if hasattr(train_loader, "set_epoch"):  # accelerate's loader re-sets its sampler's epoch on each iter
            train_loader.set_epoch(state.epoch)
        batches = iter(train_loader)
        for _ in range(state.batches_in_epoch):  # resumed mid-epoch: skip what was already trained on
            next(batches)
        if restored_rng is not None:  # after the loader drew its seed, exactly as the interrupted run did
            set_rng_state(restored_rng)
            restored_rng = None
        for batch in batches:
            state.batches_in_epoch += 1
            with accelerator.accumulate(module):
                labels = batch.pop("labels")
                logits = forward(module, batch)
                loss = compute_loss(logits, labels, problem, class_weights, focal)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(
                        [p for p in module.parameters() if p.requires_grad], cfg.max_grad_norm
                    )
                if accelerator.sync_gradients and plan.after_backward is not None:
                    plan.after_backward(state.step)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            n = len(labels)
            result.train_samples += n * accelerator.num_processes
            if "attention_mask" in batch:
                result.train_tokens += int(batch["attention_mask"].sum()) * accelerator.num_processes
            state.running += loss.item() * n
            state.running_n += n
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            progress.advance(
                loss=state.running / state.running_n,
                samples=n * cfg.gradient_accumulation_steps * accelerator.num_processes,
            )
            if state.step % cfg.log_every_steps == 0:
                logger.log(
                    {
                        "step": state.step,
                        "loss": state.running / state.running_n,
                        "lr": scheduler.get_last_lr()[0],
                    },
                    state.step,
                )
            stop = False
            evaluated = state.step % eval_every == 0 or state.step == total_steps
            if evaluated:
                t0 = time.perf_counter()
                stop = run_eval()
                eval_seconds += time.perf_counter() - t0
                state.running, state.running_n = 0.0, 0
            if state.stage + 1 < len(stages) and starts[state.stage + 1] <= state.step < total_steps:
                state.stage += 1
                optimizer, scheduler = enter_stage(state.stage)
                set_modes()
                logger.log(
                    {
                        "step": state.step,
                        "stage": stages[state.stage].name,
                        "trainable_parameters": sum(p.numel() for p in raw.parameters() if p.requires_grad),
                    },
                    state.step,
                )
            if evaluated or (cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0):
                write_checkpoint()
            if stop or state.step >= total_steps:
                result.stopped_early = stop
                done = True
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    result.train_seconds = time.perf_counter() - start - eval_seconds
    result.steps = state.step
    progress.close()
    logger.close()
    if best_state is not None:
        raw.load_state_dict(best_state, strict=False)
    return result
