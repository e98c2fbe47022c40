"""Evaluation metrics for classification, multi-label and regression problems.

All numbers come from scikit-learn; this module only picks the right calls, fixes ``labels=`` so that
classes missing from a small split still get a row, and converts everything to plain Python types so the
result can be written with ``json.dumps(..., allow_nan=False)``. Undefined values (precision of a class
never predicted, R² of a constant target) are reported as ``0.0``, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType

    from rich.table import Table

_AVERAGES = ("macro", "micro", "weighted")
# Substrings of metric names for which a smaller value is better; everything else is higher-is-better.
_LOWER_IS_BETTER = ("loss", "mae", "rmse", "mse", "hamming", "perplexity")
_PRIMARY = {
    "single_label": ("f1_macro", True),
    "multi_label": ("f1_macro", True),
    "regression": ("rmse", False),
}


def _skm() -> ModuleType:
    """Returns :mod:`sklearn.metrics`, imported on first use (it takes ~2 s, too slow for ``--help``)."""
    # sklearn, scipy, pandas ... load on first use, not when metrics is imported
    from sklearn import metrics

    return metrics


def _finite(value: float) -> float:
    """Returns ``value`` as a plain float, with NaN or infinity replaced by 0.0 (valid JSON)."""
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _check_lengths(y_true: Any, y_pred: Any) -> int:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} examples but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero examples")
    return len(y_true)


def _averaged_scores(
    y_true: Any, y_pred: Any, labels: list[int], averages: Sequence[str]
) -> dict[str, float]:
    """Precision, recall and F1 for each averaging mode, keyed ``precision_macro``, ``f1_micro``, ..."""
    skm = _skm()
    out: dict[str, float] = {}
    for average in averages:
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        out[f"precision_{average}"] = _finite(precision)
        out[f"recall_{average}"] = _finite(recall)
        out[f"f1_{average}"] = _finite(f1)
    return out


def _per_class(y_true: Any, y_pred: Any, label_ids: list[int], names: list[str]) -> dict[str, dict]:
    """``{name: {"precision", "recall", "f1", "support"}}`` for every class, seen or not."""
    precision, recall, f1, support = _skm().precision_recall_fscore_support(
        y_true, y_pred, labels=label_ids, average=None, zero_division=0
    )
    return {
        name: {
            "precision": _finite(precision[i]),
            "recall": _finite(recall[i]),
            "f1": _finite(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }


def classification_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    labels: list[str],
    probabilities: np.ndarray | None = None,
) -> dict:
    """Computes single-label classification metrics as a JSON-serialisable dict.

    Classes are the indices ``0 .. len(labels) - 1``; every class appears in ``per_class`` and in the
    confusion matrix even when a split never contains it.

    Args:
        y_true: True class indices, length N.
        y_pred: Predicted class indices, length N.
        labels: Class names; ``labels[i]`` names class index ``i``.
        probabilities: Optional (N, C) predicted probabilities with C == ``len(labels)``. Adds
            ``log_loss``, and ``roc_auc`` (positive class = index 1) when C == 2 and both classes occur
            in ``y_true`` (ROC AUC is undefined otherwise, so the key is then left out).

    Returns:
        Dict with ``accuracy``, ``precision_/recall_/f1_`` x ``macro/micro/weighted``, ``num_examples``,
        ``per_class`` ({name: {"precision", "recall", "f1", "support"}}) and ``confusion_matrix``
        ({"labels": names, "matrix": rows = true class, columns = predicted class}).

    Raises:
        ValueError: On empty or mismatched inputs, class indices outside ``range(len(labels))``, or
            probabilities of the wrong shape.

    Example:
        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
        >>> m["accuracy"]
        0.75
    """
    y_true_arr = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred_arr = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    n = _check_lengths(y_true_arr, y_pred_arr)
    num_classes = len(labels)
    if num_classes == 0:
        raise ValueError("labels must name at least one class")
    for name, arr in (("y_true", y_true_arr), ("y_pred", y_pred_arr)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(
                f"{name} holds class indices outside 0..{num_classes - 1} ({num_classes} labels)"
            )
    label_ids = list(range(num_classes))
    skm = _skm()

    result: dict[str, Any] = {"accuracy": _finite(skm.accuracy_score(y_true_arr, y_pred_arr))}
    result.update(_averaged_scores(y_true_arr, y_pred_arr, label_ids, _AVERAGES))
    result["num_examples"] = n

    if probabilities is not None:
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape != (n, num_classes):
            raise ValueError(f"probabilities must have shape ({n}, {num_classes}), got {probs.shape}")
        if num_classes == 2 and len(np.unique(y_true_arr)) == 2:
            result["roc_auc"] = _finite(skm.roc_auc_score(y_true_arr, probs[:, 1]))
        result["log_loss"] = _finite(skm.log_loss(y_true_arr, probs, labels=label_ids))

    result["per_class"] = _per_class(y_true_arr, y_pred_arr, label_ids, list(labels))
    matrix = skm.confusion_matrix(y_true_arr, y_pred_arr, labels=label_ids)  # (C, C): rows true, cols pred
    result["confusion_matrix"] = {"labels": list(labels), "matrix": matrix.astype(int).tolist()}
    return result


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Computes multi-label metrics from 0/1 indicator matrices.

    Args:
        y_true: (N, L) array of 0/1 true labels.
        y_pred: (N, L) array of 0/1 predicted labels.
        labels: The L label names, in column order.

    Returns:
        Dict with ``accuracy`` (subset accuracy: all L labels right), ``hamming_loss``,
        ``precision_/recall_/f1_`` x ``macro/micro/weighted/samples``, ``num_examples`` and ``per_class``
        ({name: {"precision", "recall", "f1", "support"}}).

    Raises:
        ValueError: On empty inputs or shapes other than (N, ``len(labels)``).
    """
    y_true_arr = np.asarray(y_true).astype(np.int64)
    y_pred_arr = np.asarray(y_pred).astype(np.int64)
    n = _check_lengths(y_true_arr, y_pred_arr)
    expected = (n, len(labels))
    if y_true_arr.shape != expected or y_pred_arr.shape != expected:
        raise ValueError(
            f"y_true and y_pred must have shape {expected}, got {y_true_arr.shape} and {y_pred_arr.shape}"
        )
    label_ids = list(range(len(labels)))
    skm = _skm()

    result: dict[str, Any] = {
        "accuracy": _finite(skm.accuracy_score(y_true_arr, y_pred_arr)),
        "hamming_loss": _finite(skm.hamming_loss(y_true_arr, y_pred_arr)),
    }
    result.update(_averaged_scores(y_true_arr, y_pred_arr, label_ids, (*_AVERAGES, "samples")))
    result["num_examples"] = n
    result["per_class"] = _per_class(y_true_arr, y_pred_arr, label_ids, list(labels))
    return result


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict:
    """Computes regression metrics.

    Args:
        y_true: True targets, length N.
        y_pred: Predictions, length N.

    Returns:
        Dict with ``mae``, ``rmse``, ``r2`` and ``num_examples``. ``r2`` is 0.0 when N < 2 or the targets
        are constant, where R² is undefined.

    Raises:
        ValueError: On empty or mismatched inputs, or NaN/infinite values.
    """
    y_true_arr = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred_arr = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    n = _check_lengths(y_true_arr, y_pred_arr)
    skm = _skm()
    constant = bool(np.all(y_true_arr == y_true_arr[0]))
    r2 = 0.0 if n < 2 or constant else _finite(skm.r2_score(y_true_arr, y_pred_arr))
    return {
        "mae": _finite(skm.mean_absolute_error(y_true_arr, y_pred_arr)),
        # sqrt of MSE rather than root_mean_squared_error, which needs scikit-learn >= 1.4.
        "rmse": _finite(math.sqrt(skm.mean_squared_error(y_true_arr, y_pred_arr))),
        "r2": r2,
        "num_examples": n,
    }


def primary_metric(problem: str) -> tuple[str, bool]:
    """Returns the default metric for choosing the best checkpoint and whether greater is better.

    Args:
        problem: ``"single_label"``, ``"multi_label"`` or ``"regression"``.

    Returns:
        ``("f1_macro", True)`` for classification problems, ``("rmse", False)`` for regression.

    Raises:
        ValueError: For an unknown problem type.
    """
    try:
        return _PRIMARY[problem]
    except KeyError:
        raise ValueError(f"unknown problem {problem!r}; expected one of {sorted(_PRIMARY)}") from None


def greater_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (False for losses and error measures)."""
    name = metric.lower()
    return not any(token in name for token in _LOWER_IS_BETTER)


def is_better(metric: str, new: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``new`` improves on ``best`` for ``metric`` by more than ``min_delta``.

    Names containing loss, mae, rmse, mse, hamming or perplexity are lower-is-better; all others are
    higher-is-better. A NaN ``new`` never counts as better.

    Args:
        metric: Metric name, e.g. ``"f1_macro"`` or ``"validation.loss"``.
        new: The candidate value.
        best: The best value so far, or None (or NaN) if there is none yet.
        min_delta: The smallest change that counts (``training.min_delta``); 0: any strict improvement.

    Returns:
        True if ``new`` is better (always True when there is no ``best`` and ``new`` is not NaN).
    """
    if math.isnan(new):
        return False
    if best is None or math.isnan(best):
        return True
    return new > best + min_delta if greater_is_better(metric) else new < best - min_delta


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _flatten_splits(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Mapping[str, Any]]:
    """Turns ``{"pretrained_baseline": {"test": {...}}}`` into ``{"pretrained_baseline.test": {...}}``.

    A mapping with at least one scalar value is a split's metrics; one holding only mappings is a group.
    """
    rows: dict[str, Mapping[str, Any]] = {}
    for name, value in metrics.items():
        if not isinstance(value, Mapping):
            continue
        if any(_is_scalar(v) for v in value.values()) or not value:
            rows[prefix + name] = value
        else:
            rows.update(_flatten_splits(value, prefix=f"{prefix}{name}."))
    return rows


def _format_value(value: Any) -> str:
    if value is None or not _is_scalar(value):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.4f}"


def format_metrics_table(metrics: dict[str, dict], keys: list[str] | None = None) -> Table:
    """Builds a rich table with one row per split and one column per scalar metric.

    Args:
        metrics: ``{split name: metrics dict}``, e.g. ``{"validation": {...}, "test": {...}}``. Nested
            groups such as ``{"pretrained_baseline": {"test": {...}}}`` become rows named
            ``"pretrained_baseline.test"``.
        keys: Metric columns to show, in order. Default: every scalar key present in any split, in
            order of first appearance; non-scalars such as ``per_class`` are skipped.

    Returns:
        A :class:`rich.table.Table`; floats are shown with 4 decimals, integers as-is, missing values
        as ``-``.
    """
    from rich.table import Table

    rows = _flatten_splits(metrics)
    if keys is None:
        keys = []
        for split_metrics in rows.values():
            keys.extend(k for k, v in split_metrics.items() if _is_scalar(v) and k not in keys)

    table = Table(title="Metrics")
    # Never shrink the split names (e.g. "pretrained_baseline.test"); narrow consoles fold the numbers.
    table.add_column("split", style="bold", no_wrap=True, min_width=max(map(len, rows), default=5))
    for key in keys:
        table.add_column(key, justify="right")
    for split, split_metrics in rows.items():
        table.add_row(split, *(_format_value(split_metrics.get(key)) for key in keys))
    return table
