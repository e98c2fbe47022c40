"""Loss functions per problem type, with class weights for imbalanced data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from transferkit.errors import RunError


def balanced_class_weights(label_ids: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (k * count)`` (scikit-learn's "balanced"); unseen classes get 1."""
    counts = np.bincount(np.asarray(label_ids, dtype=int), minlength=num_classes).astype(float)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def check_finite(loss: torch.Tensor, step: int, mixed_precision: str) -> None:
    """Stops the run with what to change when the loss is NaN / inf (it would poison every weight)."""
    if torch.isfinite(loss):
        return
    hint = (
        f" under {mixed_precision} mixed precision: set training.precision=fp32 (or lower training.learning_rate)"
        if mixed_precision != "no"
        else ": lower training.learning_rate (or check the targets for NaN / inf values)"
    )
    raise RunError(f"the training loss became {loss.item()} at step {step}{hint}")


def compute_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem: str,
    class_weights: torch.Tensor | None = None,
    focal_gamma: float | None = None,
) -> torch.Tensor:
    """Mean loss of a batch.

    Args:
        logits: (B, C) raw scores; (B, 1) for regression; (B, T, C) per token (token classification);
            (B, T, V) for causal_lm, or (N, V) at the N positions that predict a labelled token.
        labels: (B,) class ids, (B, C) multi-hot, or (B,) floats; (B, T) class ids or -100 per token;
            (B, T) next-token ids for causal_lm (-100: no loss).
        problem: "single_label", "multi_label", "regression" or "causal_lm" (mean over labelled tokens).
        class_weights: (C,) per-class weights (single_label: weighted CE; multi_label: positive weights).
        focal_gamma: When set, the focal loss ``(1 - p_t) ** gamma * CE`` (Lin et al., 2017).
    """
    if problem == "causal_lm" and logits.ndim == 2:  # (N, V): only the positions that predict a label
        target = labels[:, 1:]
        return F.cross_entropy(logits.float(), target[target != -100])
    if problem == "causal_lm":  # (B, T, V) logits: position t predicts token t + 1; -100 labels are skipped
        return F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
        )
    if logits.ndim == 3:  # token classification: (B, T, C) and (B, T); -100 marks positions without a label
        keep = labels != -100
        logits, labels = logits[keep], labels[keep]  # (N, C), (N,)
    logits = logits.float()  # bf16 / fp16 logits under mixed precision: the loss in fp32
    if problem == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float())
    if problem == "multi_label":
        pos_weight = class_weights.to(logits.device) if class_weights is not None else None
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=pos_weight)
    weight = class_weights.to(logits.device) if class_weights is not None else None
    if focal_gamma is not None:
        ce = F.cross_entropy(logits, labels, weight=weight, reduction="none")  # (B,)
        p_t = torch.softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
        return ((1 - p_t) ** focal_gamma * ce).mean()
    return F.cross_entropy(logits, labels, weight=weight)
