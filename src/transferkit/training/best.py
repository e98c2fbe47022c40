"""The best evaluation so far: its weights, kept to be restored at the end, and early stopping with patience."""

from __future__ import annotations

import torch

from transferkit.evaluation import is_better
from transferkit.training.state import LoopState, TrainResult


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
    ) -> None:
        """
        Args:
            model: The unwrapped model whose weights are kept and restored.
            metric: Validation metric that picks the best state.
            patience: Evaluations without improvement before stopping; None never stops early.
            every_weight: Keep every weight, not only the trainable ones and the buffers (staged plans).
            weights: Weights kept by an interrupted run (resume).
        """
        self.model = model
        self.metric = metric
        self.patience = patience
        self.every_weight = every_weight
        self.weights = weights

    def offer(self, value: float, state: LoopState, result: TrainResult) -> bool:
        """Keeps the weights when ``value`` beats the best so far; returns True when patience is exhausted."""
        if is_better(self.metric, value, result.best_metric):
            result.best_metric, result.best_step, state.bad_evals = value, state.step, 0
            self.weights = self._snapshot()
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
