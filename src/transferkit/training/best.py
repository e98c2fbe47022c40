"""The best evaluation so far: its weights, kept to be restored at the end, and early stopping with patience.

A probe-initialised run (``head``, ``lp-ft``, ``gradual``) evaluates its start first, at step 0: the linear
probe on the pretrained trunk, the pretrained baseline itself. A later evaluation displaces that start only
when it beats it by more than ``training.min_delta`` (``auto``: two validation examples' worth for metrics
where higher is better). A gain of one or two examples is what one resample of the validation set moves
(McNemar's test gives p = 0.16 even for two wins and no losses), and following it had runs leave the
baseline for noise. Measured (bench_defaults, 256 validation rows, 2026-12-04): vader_amazon at 8 per class,
``lp-ft`` left its start for +0.0003 validation macro-F1 and lost 1.1 points of test macro-F1; mnist5k at
32 per class, ``head`` left it for +0.0041 and lost 0.05. Patience still counts any strict gain as progress
(a gain within the threshold is not kept, but training goes on), and once the start is displaced any strict
improvement counts: applying the threshold to every evaluation instead stopped ``lp-ft`` while it was still
improving in small steps (vader_amazon at 32 / 128 per class: test macro-F1 0.770 -> 0.759, 0.790 -> 0.776;
mnist5k at 32 per class, patience alone: 0.920 -> 0.884, the start kept).
The pretrained-baseline guard uses the same threshold against the baseline.
"""

from __future__ import annotations

import torch

from transferkit.evaluation import is_better
from transferkit.evaluation.metrics import greater_is_better
from transferkit.training.state import LoopState, TrainResult

AUTO_MIN_DELTA_EXAMPLES = 2  # training.min_delta=auto: this many validation examples' worth


def min_delta_for(setting: float | str, metric: str, validation_examples: int) -> float:
    """``training.min_delta`` resolved: ``auto`` is 2 / validation examples for a metric where higher is
    better (accuracy, F1, exact match: one example moves them by about 1 / n), 0 for losses and perplexity
    (unbounded: no example count maps onto them) and without a validation set."""
    if setting != "auto":
        return float(setting)
    if not greater_is_better(metric) or validation_examples <= 0:
        return 0.0
    return AUTO_MIN_DELTA_EXAMPLES / validation_examples


class BestKeeper:
    """Keeps the weights of the best evaluation and counts the evaluations since it.

    The best score and step live in the :class:`TrainResult`, the count in the :class:`LoopState` (both go
    into every checkpoint); the kept weights in ``weights``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        metric: str,
        patience: int | None,
        every_weight: bool,
        weights: dict[str, torch.Tensor] | None = None,
        min_delta: float = 0.0,
    ) -> None:
        """
        Args:
            model: The unwrapped model whose weights are kept and restored.
            metric: Validation metric that picks the best state.
            patience: Evaluations without improvement before stopping; None never stops early.
            every_weight: Keep every weight, not only the trainable ones and the buffers (staged plans).
            weights: Weights kept by an interrupted run (resume).
            min_delta: The gain needed to displace the step-0 start (:func:`min_delta_for`).
        """
        self.model = model
        self.metric = metric
        self.patience = patience
        self.every_weight = every_weight
        self.weights = weights
        self.min_delta = min_delta

    def offer(self, value: float, state: LoopState, result: TrainResult) -> bool:
        """Keeps the weights when ``value`` beats the best so far (the step-0 start: by more than
        ``min_delta``); returns True when patience is exhausted."""
        delta = self.min_delta if result.best_step == 0 else 0.0
        if is_better(self.metric, value, result.best_metric, delta):
            result.best_metric, result.best_step, state.bad_evals = value, state.step, 0
            state.best_seen = value
            self.weights = self._snapshot()
            return False
        seen = state.best_seen if state.best_seen is not None else result.best_metric
        if delta and is_better(self.metric, value, seen):  # a gain within min_delta of the start: not kept,
            state.best_seen, state.bad_evals = value, 0  # but still progress, so patience starts again
            return False
        state.bad_evals += 1
        return self.patience is not None and state.bad_evals >= self.patience

    def _snapshot(self) -> dict[str, torch.Tensor]:
        raw = self.model
        sd = raw.state_dict()
        # staged plans unfreeze more later: keep every weight, so the restore is exactly this evaluation's;
        # buffers too (BatchNorm running statistics move in training mode without being parameters)
        kept = {k for k, _ in raw.named_buffers()} | {n for n, p in raw.named_parameters() if p.requires_grad}
        keep = sd.keys() if self.every_weight else [k for k in sd if k in kept]
        return {k: sd[k].detach().clone() for k in keep}

    def restore(self) -> None:
        """Loads the best weights back into the model (nothing when no evaluation ran)."""
        if self.weights is not None:
            self.model.load_state_dict(self.weights, strict=False)
