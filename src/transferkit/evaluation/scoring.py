"""From model outputs to metrics: logits -> predictions -> the metric dict of the problem type."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from transferkit.evaluation.metrics import classification_metrics, multilabel_metrics, regression_metrics


def probabilities(logits: torch.Tensor, problem: str) -> torch.Tensor:
    """Softmax for single-label, sigmoid for multi-label, identity for regression."""
    if problem == "single_label":
        return F.softmax(logits.float(), dim=-1)
    if problem == "multi_label":
        return torch.sigmoid(logits.float())
    return logits.float()


PREDICTIONS = "_predictions"  # per-example truth and prediction; artifacts.save_predictions writes them apart


def score(
    logits: torch.Tensor, targets: np.ndarray, problem: str, labels: list[str], predictions: bool = False
) -> dict:
    """Metrics of (N, C) logits against targets (class ids, multi-hot rows or floats), loss included.

    ``predictions`` adds the per-example class names under ``PREDICTIONS`` (single_label), for the run's
    ``test_predictions.json``.
    """
    logits = torch.as_tensor(logits).float()
    y = torch.as_tensor(targets)
    if problem == "regression":
        pred = logits.squeeze(-1).numpy()
        out = regression_metrics(y.numpy().astype(float).tolist(), pred.astype(float).tolist())
        out["loss"] = float(F.mse_loss(logits.squeeze(-1), y.float()))
        return out
    probs = probabilities(logits, problem)
    if problem == "multi_label":
        out = multilabel_metrics(y.numpy().astype(int), (probs.numpy() >= 0.5).astype(int), labels)
        out["loss"] = float(F.binary_cross_entropy_with_logits(logits, y.float()))
        return out
    p64 = probs.double().numpy()
    p64 = p64 / p64.sum(
        axis=1, keepdims=True
    )  # float32 softmax rows can miss 1.0 by more than sklearn allows
    out = classification_metrics(
        y.numpy().tolist(), probs.argmax(-1).numpy().tolist(), labels, probabilities=p64
    )
    out["loss"] = float(F.cross_entropy(logits, y.long()))
    if predictions:
        out[PREDICTIONS] = {
            "y_true": [labels[i] for i in y.long().tolist()],
            "y_pred": [labels[i] for i in probs.argmax(-1).tolist()],
        }
    return out
