"""Where a run stands and what it returns: the loop's counters (saved in every checkpoint) and its result."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    batch_norm: str | None = None  # what BatchNorm layers did (training.batch_norm resolved); None: none
    min_delta: float = 0.0  # training.min_delta resolved: the smallest validation improvement that counted

    @property
    def guard_min_delta(self) -> float:
        """The threshold of the pretrained-baseline guard: ``min_delta``, but none for a run whose best
        evaluation is its step-0 start (a probe start is the baseline itself, up to numerics)."""
        return 0.0 if self.best_step == 0 else self.min_delta

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else 0.0

    def summary(self, wall_seconds: float, **extra) -> dict:
        """``metrics.json`` -> ``training``, the same block for every task (``extra``: task-specific fields)."""
        return {
            "steps": self.steps,
            "stopped_early": self.stopped_early,
            "resumed_from_step": self.resumed_from,
            "train_seconds": round(self.train_seconds, 3),
            "train_samples_per_second": round(self.samples_per_second, 2),
            "train_tokens": self.train_tokens,
            **({"batch_norm": self.batch_norm} if self.batch_norm else {}),
            "min_delta": round(self.min_delta, 6),
            **extra,
            "wall_seconds": round(wall_seconds, 3),
            "schedule": self.schedule,
        }


@dataclass
class LoopState:
    """The loop's position; a checkpoint stores ``vars()`` of it and a resumed run rebuilds it from that."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    stage: int = 0
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    best_seen: float | None = None  # best validation value so far, kept or not (a gain within min_delta)
    stopped: bool = False  # patience ran out: a run resumed from this checkpoint trains no further
    running: float = 0.0  # sum of training losses since the last evaluation, weighted by batch size
    running_n: int = 0

    @classmethod
    def from_checkpoint(cls, saved: dict, patience: int | None) -> LoopState:
        """The state a checkpoint saved (``vars()`` of it), for a run with early-stopping ``patience``.

        Checkpoints written before ``stopped`` existed lack it. For them it is inferred from ``bad_evals``,
        which every checkpoint holds: the loop stops at the evaluation that brings the evaluations since the
        best to ``patience``, and the count changes only at evaluations, so it reaches ``patience`` in a
        checkpoint exactly when that checkpoint's run had stopped (patience comes from the saved config).
        """
        state = cls(**saved)
        if "stopped" not in saved:
            state.stopped = patience is not None and state.bad_evals >= patience
        return state
