"""How long a run trains, decided from the data: optimizer steps, batch size, evaluations, patience.

A fixed "3 epochs at batch 32" is tuned for large data and undertrains small data: 300 examples give 30
optimizer steps, far from convergence (a frozen-feature head then ends below the linear probe printed beside
it). When neither ``training.epochs`` nor ``training.max_steps`` is set, the run length follows one rule:

* **batch size** (``training.batch_size`` unset): 32, or ``n // 4`` (at least 8) for sets under 128
  examples, so that even 32 examples make 4 optimizer steps per epoch (with epochs or max_steps given: 32);
* **steps**: 3 epochs, but at least ``training.min_steps`` optimizer steps and at most
  ``training.max_epochs`` epochs. Heads trained on cached features (a step costs microseconds) get 5x the
  minimum and 10x the epoch cap;
* **evaluations**: one per epoch, but between 5 and 20 over the run (small sets: often enough to stop
  early well; large sets: at least 5 chances to keep the best), and no more than make the validation passes
  cost about what training costs (a training example costs ~3 forward passes): 16 training examples with
  256 validation rows are evaluated 5 times, not 20;
* **early stopping**: after 5 evaluations without improvement (``training.early_stopping_patience``; a
  probe-initialised start is displaced only by more than ``training.min_delta``, see
  :mod:`~transferkit.training.best`); the best evaluation's weights are restored at the end either way.

``training.epochs`` or ``training.max_steps`` set by the user switch the rule off: the run then trains
exactly that long, evaluates ``training.evaluations_per_epoch`` times per epoch and stops early only with an
explicit patience. The rule depends only on the data and the config, so a resumed run recomputes the same
schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from transferkit.config import TrainingConfig

AUTO_EPOCHS = 3  # epochs on data large enough that 3 epochs exceed training.min_steps
AUTO_BATCH = 32  # the batch size on sets of 128 examples or more
MIN_AUTO_BATCH = 8  # small sets: n // 4 rows per batch, never fewer than this
MIN_EVALUATIONS, MAX_EVALUATIONS = 5, 20
TRAIN_FORWARDS = 3  # a training example costs ~3 forward passes (forward, backward, weight gradients)
AUTO_PATIENCE = 5  # evaluations without improvement before an auto schedule stops
CACHED_STEP_FACTOR, CACHED_EPOCH_FACTOR = 5, 10  # heads on cached features: steps are nearly free


def is_auto(cfg: TrainingConfig) -> bool:
    """True when the run length is derived from the data (neither epochs nor max_steps given)."""
    return cfg.epochs is None and cfg.max_steps is None


def batch_size_for(cfg: TrainingConfig, num_examples: int) -> int:
    """The training batch size per process: the configured one; else 32, or on small sets ``n // 4`` (>= 8)
    when the schedule is data-derived (a run given epochs or max_steps keeps 32, as before the rule)."""
    if cfg.batch_size is not None:
        return cfg.batch_size
    if not is_auto(cfg):
        return AUTO_BATCH
    return max(MIN_AUTO_BATCH, min(AUTO_BATCH, num_examples // 4))


@dataclass(frozen=True)
class Schedule:
    """The run's length, as the loop runs it and ``metrics.json`` records it."""

    total_steps: int
    steps_per_epoch: int
    eval_every: int
    patience: int | None
    batch_size: int
    epochs: float
    rule: str

    def to_dict(self) -> dict:
        return asdict(self)


def plan_schedule(
    cfg: TrainingConfig,
    num_examples: int,
    steps_per_epoch: int,
    cached: bool = False,
    num_validation: int | None = None,
) -> Schedule:
    """Derives the schedule of a run.

    Args:
        cfg: Training settings.
        num_examples: Training examples (rows the sampler draws from).
        steps_per_epoch: Optimizer steps in one epoch (per process, after gradient accumulation).
        cached: Only a head trains, on cached features (cheap steps: longer minimum, higher epoch cap).
        num_validation: Validation examples; bounds the number of evaluations by their cost.

    Returns:
        The :class:`Schedule`.

    Example:
        >>> from transferkit.config import TrainingConfig
        >>> plan_schedule(TrainingConfig(), 300, 10).total_steps  # 300 examples: 20 epochs of 10 steps
        200
    """
    spe = max(1, steps_per_epoch)
    batch = batch_size_for(cfg, num_examples)
    if not is_auto(cfg):
        total = cfg.max_steps or max(1, math.ceil(cfg.epochs * spe))
        every = max(1, spe // cfg.evaluations_per_epoch)
        how = "training.max_steps" if cfg.max_steps else "training.epochs"
        return Schedule(total, spe, every, cfg.early_stopping_patience or None, batch, total / spe, how)
    min_steps = cfg.min_steps * (CACHED_STEP_FACTOR if cached else 1)
    max_epochs = cfg.max_epochs * (CACHED_EPOCH_FACTOR if cached else 1)
    wanted = max(AUTO_EPOCHS * spe, min_steps)
    total = max(1, min(wanted, math.ceil(max_epochs * spe)))
    epochs = total / spe
    evaluations = min(max(round(epochs * cfg.evaluations_per_epoch), MIN_EVALUATIONS), MAX_EVALUATIONS)
    if num_validation and not cached:  # validation passes cost ~ what training costs, at most
        affordable = TRAIN_FORWARDS * total * batch // num_validation
        evaluations = min(evaluations, max(MIN_EVALUATIONS, affordable))
    every = max(1, math.ceil(total / min(evaluations, total)))
    if cfg.early_stopping_patience is None:
        patience = AUTO_PATIENCE
    else:
        patience = cfg.early_stopping_patience or None  # 0: never stop early
    if wanted == AUTO_EPOCHS * spe:
        why = f"{AUTO_EPOCHS} epochs of {spe} steps"
    elif total == wanted:
        why = f"at least {min_steps} steps ({epochs:.3g} epochs of {spe} steps)"
    else:
        why = f"capped at {max_epochs:g} epochs of {spe} steps (fewer than {min_steps} steps)"
    rule = f"auto: {why}, batch {batch}, evaluate every {every} steps, patience {patience}"
    return Schedule(total, spe, every, patience, batch, epochs, rule)
