"""The training loop on Hugging Face Accelerate.

prepare -> for each step: forward, loss, backward, clip, step, schedule -> evaluate -> checkpoint -> keep
the best (early stopping with patience) -> restore the best at the end. Strategies with stages (gradual
unfreezing) get a fresh optimizer and warmup at each stage. Runs unchanged under ``accelerate launch``, and
continues from its newest checkpoint after a kill (``resume=True``) with the same result.

The loop itself is :meth:`_Run.train`; its parts live next to it: :mod:`~transferkit.training.stages`
(stage boundaries, a fresh optimizer per stage), :mod:`~transferkit.training.best` (the best weights and
patience), :mod:`~transferkit.training.resume` (what a checkpoint holds and how a run continues from one)
and :mod:`~transferkit.training.schedule` (how long the run is, how often it evaluates).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset

from transferkit import hardware
from transferkit.config import TrainingConfig
from transferkit.data.text import Collator, LengthGroupedBatchSampler
from transferkit.evaluation.scoring import PREDICTIONS
from transferkit.inference import forward_in_order, ordered_loader, single_process_budget
from transferkit.strategies.base import StrategyPlan
from transferkit.training import batch_norm, embedding_grads, fast_dropout
from transferkit.training.best import BestKeeper, min_delta_for
from transferkit.training.checkpoint import set_rng_state
from transferkit.training.logger import RunLogger
from transferkit.training.losses import check_finite, compute_loss
from transferkit.training.progress import TrainProgress
from transferkit.training.resume import newest_checkpoint, resume_from, write_checkpoint
from transferkit.training.schedule import Schedule, batch_size_for, plan_schedule
from transferkit.training.stages import Stages
from transferkit.training.state import LoopState, TrainResult

__all__ = ["Evaluate", "Forward", "TrainResult", "make_accelerator", "train_loop"]

Forward = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
Evaluate = Callable[[torch.Tensor], dict]
log = logging.getLogger("transferkit")


def make_accelerator(cfg: TrainingConfig) -> Accelerator:
    """An Accelerator at ``cfg.precision`` (resolved for this machine: see :mod:`transferkit.hardware`).

    On a machine without an accelerator device it runs on CPU, and several processes started by
    ``accelerate launch --multi_gpu`` or ``torchrun`` then train with DDP over gloo. The resolved precision is
    kept on the accelerator (:func:`transferkit.hardware.precision_of`) for ``metrics.json`` and the run manifest.
    """
    device = hardware.device_type()
    precision = hardware.resolve_precision(cfg.precision, device)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", precision.mixed) != precision.mixed:
        # Accelerate keeps one mixed precision per process; a second run in the same process (tests, compare
        # cells) at another precision starts a fresh AcceleratorState (the distributed PartialState stays).
        AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        cpu=device == "cpu",
        mixed_precision=precision.mixed,
    )
    accelerator.transferkit_precision = precision
    if accelerator.is_main_process:
        log.info("precision: %s (%s)", precision.name, precision.reason)
    return accelerator


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
    pretrained: bool = True,
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
        pretrained: Whether the trunk starts from pretrained weights (``training.batch_norm: auto``).

    Returns:
        A :class:`TrainResult`; ``module`` holds the best weights on return.
    """
    accelerator = accelerator or make_accelerator(cfg)
    set_seed(cfg.seed)
    run = _Run(module, forward, plan, train_set, val_set, collator, evaluate, cfg, problem, metric, class_weights, accelerator)  # fmt: skip
    run.batch_norm = batch_norm.resolve(cfg.batch_norm, pretrained) if batch_norm.layers(module) else None
    run.prepare(sample_weights)
    fast_dropout.install(run.raw, cfg.fast_dropout)
    try:
        run.start(newest_checkpoint(checkpoint_dir) if resume else None, checkpoint_dir, log_dir, tensorboard)
        return run.train()
    finally:  # the model goes back to the user (and to saving) with PyTorch's own embedding gradients
        embedding_grads.uninstall(run.raw)
        fast_dropout.uninstall(run.raw)


@dataclass
class _Run:
    """One call of :func:`train_loop`: what it trains on, what it prepared, and where it stands."""

    module: torch.nn.Module
    forward: Forward
    plan: StrategyPlan
    train_set: Dataset
    val_set: Dataset | None
    collator: Collator
    scores_of: Evaluate
    cfg: TrainingConfig
    problem: str
    metric: str
    class_weights: torch.Tensor | None
    accelerator: Accelerator
    batch_norm: str | None = None  # resolved training.batch_norm; None: the model has no BatchNorm layer
    recalibration_loader: DataLoader | None = None  # the training set in order, under batch_norm=recalibrate

    def prepare(self, sample_weights: list[float] | None) -> None:
        """Loaders, the schedule and the stages; ``module`` wrapped for distributed training."""
        cfg, acc, plan, train_set = self.cfg, self.accelerator, self.plan, self.train_set
        self.sampler = LengthGroupedBatchSampler(
            train_set.lengths,
            batch_size_for(cfg, len(train_set)),
            cfg.seed,
            group_by_length=cfg.group_by_length,
            weights=sample_weights,
        )
        train_loader = DataLoader(train_set, batch_sampler=self.sampler, collate_fn=self.collator)
        # distributed: each process gets a shard
        self.module, self.train_loader = acc.prepare(self.module, train_loader)
        steps_per_epoch = max(1, math.ceil(len(self.train_loader) / cfg.gradient_accumulation_steps))
        self.schedule: Schedule = plan_schedule(
            cfg,
            len(train_set),
            steps_per_epoch,
            plan.cache == "features",
            len(self.val_set) if self.val_set is not None else None,
        )
        total_steps = self.schedule.total_steps
        if acc.is_main_process:
            log.info("schedule: %d optimizer steps (%s)", total_steps, self.schedule.rule)
        if plan.on_train_begin is not None:
            plan.on_train_begin(total_steps)
        self.stages = Stages(plan, steps_per_epoch, total_steps, cfg, acc, acc.unwrap_model(self.module))
        self.focal = cfg.focal_gamma if cfg.loss == "focal" and self.problem == "single_label" else None
        self.raw = acc.unwrap_model(self.module)
        self.val_loader = _validation_loader(self.val_set, self.collator, cfg, acc)
        if self.batch_norm == "recalibrate":  # the training set in order, in training-size batches (sharded)
            ordered = ordered_loader(train_set, self.collator, batch_size_for(cfg, len(train_set)))
            self.recalibration_loader = acc.prepare_data_loader(ordered)

    def start(
        self, checkpoint: Path | None, checkpoint_dir: Path | None, log_dir: Path | None, tensorboard: bool
    ) -> None:
        """The first stage's optimizer, or every state of ``checkpoint`` when resuming from one; the logs."""
        self.checkpoint_dir, self.resumed = checkpoint_dir, checkpoint is not None
        delta = min_delta_for(self.cfg.min_delta, self.metric, len(self.val_set) if self.val_set else 0)
        self.result = TrainResult(
            schedule=self.schedule.to_dict(), batch_norm=self.batch_norm, min_delta=delta
        )
        self.restored_rng, best_weights = None, None
        if checkpoint is not None:
            resumed = resume_from(
                checkpoint, self.raw, self.stages, self.plan, self.result, self.schedule.patience
            )
            self.state, self.optimizer, self.scheduler = resumed.state, resumed.optimizer, resumed.scheduler
            best_weights, self.restored_rng = resumed.best_weights, resumed.rng
        else:
            self.state = LoopState()
            self.optimizer, self.scheduler = self.stages.enter(0)
        patience, staged = self.schedule.patience, len(self.stages) > 1
        self.best = BestKeeper(self.raw, self.metric, patience, staged, best_weights, min_delta=delta)
        acc = self.accelerator
        self.logger = RunLogger(log_dir, tensorboard, acc.is_main_process)
        self.progress = TrainProgress(
            self.schedule.total_steps,
            enabled=self.cfg.progress and acc.is_local_main_process,
            completed=self.state.step,
        )

    def train(self) -> TrainResult:
        """The loop: train steps until the schedule ends or patience runs out; the best weights restored."""
        cfg, state, result, total_steps = self.cfg, self.state, self.result, self.schedule.total_steps
        self.set_modes()
        if self.plan.probe_init and not self.resumed:
            # the head starts as the fitted probe: the start is a candidate, so training can only keep or improve
            # it on validation (LP-FT, and heads initialised from the probe)
            self.evaluate()
        start = time.perf_counter()
        eval_seconds = 0.0
        done = state.step >= total_steps or state.stopped  # resumed from the checkpoint of the last step
        while not done:
            for batch in self.epoch_batches():
                state.batches_in_epoch += 1
                loss, n = self.train_step(batch)
                self.count(batch, loss, n)
                if not self.accelerator.sync_gradients:  # accumulating: no optimizer step yet
                    continue
                state.step += 1
                self.log_step(n)
                stop = False
                evaluated = state.step % self.schedule.eval_every == 0 or state.step == total_steps
                if evaluated:
                    t0 = time.perf_counter()
                    stop = state.stopped = self.evaluate()  # in the checkpoint below: a resume stops too
                    eval_seconds += time.perf_counter() - t0
                    state.running, state.running_n = 0.0, 0
                if self.stages.next_due(state.stage, state.step):
                    self.next_stage()
                if evaluated or (cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0):
                    self.checkpoint()
                if stop or state.step >= total_steps:
                    done = True
                    break
            else:
                state.epoch += 1
                state.batches_in_epoch = 0
        result.stopped_early = state.stopped
        result.train_seconds = time.perf_counter() - start - eval_seconds
        result.steps = state.step
        self.progress.close()
        self.logger.close()
        if self.batch_norm == "recalibrate" and self.val_loader is None:  # no evaluation recalibrated them
            batch_norm.recalibrate(self.module, self.recalibration_loader, self.forward, self.accelerator)
        self.best.restore()
        return result

    def set_modes(self) -> None:
        self.module.train()
        for m in self.plan.frozen_modules:
            m.eval()
        batch_norm.hold(self.module, self.batch_norm)

    def epoch_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """The current epoch's micro-batches, less those a resumed run already trained on."""
        epoch, loader = self.state.epoch, self.train_loader
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):  # per-epoch random inputs (image augmentation)
            self.train_set.set_epoch(epoch)
        if hasattr(loader, "set_epoch"):  # accelerate's loader re-sets its sampler's epoch on each iter
            loader.set_epoch(epoch)
        batches = iter(loader)
        for _ in range(self.state.batches_in_epoch):  # resumed mid-epoch: skip what was already trained on
            next(batches)
        if self.restored_rng is not None:
            # after the loader drew its seed, exactly as the interrupted run did
            set_rng_state(self.restored_rng)
            self.restored_rng = None
        return batches

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Forward, loss, backward, clip, step and schedule on one micro-batch; returns its loss and size.

        Under gradient accumulation the optimizer steps (and the gradients clear) only on the micro-batch that
        syncs gradients; the scheduler is stepped by hand then (see :meth:`Stages.enter`).
        """
        acc, cfg, plan, module = self.accelerator, self.cfg, self.plan, self.module
        with acc.accumulate(module):
            labels = batch.pop("labels")
            with acc.autocast():  # bf16 / fp16 matmuls under mixed precision; the loss in fp32
                logits = self.forward(module, batch)
            loss = compute_loss(logits, labels, self.problem, self.class_weights, self.focal)
            check_finite(loss, self.state.step, acc.mixed_precision)
            acc.backward(loss)
            if acc.sync_gradients and cfg.max_grad_norm:
                acc.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], cfg.max_grad_norm)
            if acc.sync_gradients and plan.after_backward is not None:
                plan.after_backward(self.state.step)
            self.optimizer.step()
            if acc.sync_gradients:
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss, len(labels)

    def count(self, batch: dict[str, torch.Tensor], loss: torch.Tensor, n: int) -> None:
        """Throughput (over every process) and the running training loss."""
        processes = self.accelerator.num_processes
        self.result.train_samples += n * processes
        if "attention_mask" in batch:
            self.result.train_tokens += int(batch["attention_mask"].sum()) * processes
        self.state.running += loss.item() * n
        self.state.running_n += n

    def log_step(self, n: int) -> None:
        state = self.state
        self.progress.advance(
            loss=state.running / state.running_n,
            samples=n * self.cfg.gradient_accumulation_steps * self.accelerator.num_processes,
        )
        if state.step % self.cfg.log_every_steps == 0:
            loss, lr = state.running / state.running_n, self.scheduler.get_last_lr()[0]
            self.logger.log({"step": state.step, "loss": loss, "lr": lr}, state.step)

    def evaluate(self) -> bool:
        """Evaluates and offers the weights to the keeper; returns True when patience is exhausted."""
        if self.val_loader is None:
            return False
        state, module = self.state, self.module
        if self.batch_norm == "recalibrate":
            batch_norm.recalibrate(module, self.recalibration_loader, self.forward, self.accelerator)
        module.eval()
        logits = forward_in_order(
            lambda b: self.forward(module, b),
            self.val_set,
            self.collator,
            self.cfg.eval_batch_size,
            self.accelerator,
            loader=self.val_loader,
        )
        self.set_modes()
        scores = self.scores_of(logits)
        scores.pop(PREDICTIONS, None)  # per-example predictions are for the final evaluation only
        record = {
            "step": state.step,
            "epoch": round(state.step / self.schedule.steps_per_epoch, 4),
            "stage": self.stages.name(state.stage),
            "train_loss": state.running / max(state.running_n, 1),
            "validation": scores,
        }
        self.result.history.append(record)
        self.logger.log(record, state.step)
        value = scores.get(self.metric)
        if value is None:
            raise KeyError(
                f"metric {self.metric!r} is not among the validation metrics: {sorted(k for k, v in scores.items() if not isinstance(v, dict | list))}"
            )
        self.progress.note(f"val {self.metric} {value:.4f}")
        return self.best.offer(value, state, self.result)

    def next_stage(self) -> None:
        """Enters the next stage: its trainable set, a fresh optimizer and warmup."""
        state = self.state
        state.stage += 1
        self.optimizer, self.scheduler = self.stages.enter(state.stage)
        self.set_modes()
        trainable = sum(p.numel() for p in self.raw.parameters() if p.requires_grad)
        self.logger.log(
            {"step": state.step, "stage": self.stages.name(state.stage), "trainable_parameters": trainable},
            state.step,
        )

    def checkpoint(self) -> None:
        if self.checkpoint_dir is None or not self.accelerator.is_main_process:
            return
        write_checkpoint(
            self.checkpoint_dir,
            self.raw,
            self.state,
            self.result,
            self.best.weights,
            self.optimizer,
            self.scheduler,
            self.plan,
            self.cfg.keep_checkpoints,
        )


def _validation_loader(
    val_set: Dataset | None, collator: Collator, cfg: TrainingConfig, accelerator: Accelerator
) -> DataLoader | None:
    """Validation batches in length order (sharded when distributed); None without a validation set."""
    if val_set is None:
        return None
    budget = single_process_budget(cfg.eval_max_tokens, accelerator)
    return accelerator.prepare_data_loader(ordered_loader(val_set, collator, cfg.eval_batch_size, budget))
