"""PNG plots of evaluation results: confusion matrices and training curves.

matplotlib is imported inside the functions (it costs ~0.3 s), and figures are built with the
object-oriented :class:`matplotlib.figure.Figure` API rather than pyplot, so no global figure state is
kept and nothing needs closing. Every PNG is written atomically (see :mod:`transferkit.utils.io`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.utils.io import atomic_save_via

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Validation metrics drawn in the right-hand panel of the training curves, when present. Plotting all
# eleven precision/recall/F1 variants would make the panel unreadable.
_CURVE_METRICS = (
    "accuracy",
    "f1_macro",
    "f1_micro",
    "f1_samples",
    "roc_auc",
    "hamming_loss",
    "mae",
    "rmse",
    "r2",
)
_MAX_ANNOTATED_CLASSES = 30  # beyond this, cell numbers are too small to read


def _new_figure(width: float, height: float) -> Figure:
    """Creates a figure that renders with Agg, without touching pyplot's state."""
    import matplotlib

    # Switching the backend after pyplot was imported would close the user's open figures (e.g. in a
    # notebook); Figure + savefig below does not need pyplot at all, so only select Agg when it is free.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save_png(fig: Figure, path_png: str | Path) -> Path:
    return atomic_save_via(path_png, lambda tmp: fig.savefig(tmp, format="png"))


def save_confusion_matrix(
    cm: Mapping[str, Any],
    path_png: str | Path,
    title: str = "Confusion matrix",
    normalize: bool = True,
) -> Path:
    """Draws a confusion matrix as a PNG heat map, written atomically.

    Args:
        cm: The ``confusion_matrix`` entry of :func:`~transferkit.evaluation.classification_metrics`:
            ``{"labels": [names], "matrix": [[counts]]}``, rows = true class, columns = predicted.
        path_png: Destination file; the parent folder is created if needed.
        title: Figure title.
        normalize: Colour cells by row-normalised rate (recall per true class) instead of raw counts.
            Cells always show the count, plus the row percentage when normalised.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: If there are no labels or the matrix is not ``len(labels)`` x ``len(labels)``.
    """
    names = [str(name) for name in cm["labels"]]
    num_classes = len(names)
    counts = np.asarray(cm["matrix"], dtype=np.int64)  # (C, C): rows true, columns predicted
    if num_classes == 0 or counts.shape != (num_classes, num_classes):
        raise ValueError(
            f"confusion matrix must be {num_classes}x{num_classes} (one row per label), got shape {counts.shape}"
        )

    row_totals = counts.sum(axis=1, keepdims=True)  # (C, 1)
    # Rows of classes absent from the split stay 0 instead of dividing by zero.
    rates = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    colours = rates if normalize else counts

    annotate = num_classes <= _MAX_ANNOTATED_CLASSES
    # Room for two lines of text per cell when annotated; otherwise just enough for the tick labels.
    side = min(4.0 + (0.6 if annotate else 0.25) * num_classes, 24.0)
    tick_size = 10 if num_classes <= 20 else 7 if num_classes <= 50 else 5
    fig = _new_figure(side + 1.5, side)
    ax = fig.add_subplot()
    image = ax.imshow(
        colours, cmap="Blues", vmin=0, vmax=1.0 if normalize else max(int(counts.max(initial=0)), 1)
    )
    fig.colorbar(image, ax=ax, label="fraction of true class" if normalize else "count")

    ax.set_title(title)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_xticks(
        range(num_classes), labels=names, rotation=45, ha="right", rotation_mode="anchor", fontsize=tick_size
    )
    ax.set_yticks(range(num_classes), labels=names, fontsize=tick_size)

    if annotate:
        font_size = 10 if num_classes <= 10 else 7
        threshold = (1.0 if normalize else counts.max()) / 2
        for i in range(num_classes):
            for j in range(num_classes):
                text = f"{counts[i, j]}\n{rates[i, j]:.0%}" if normalize else str(counts[i, j])
                colour = "white" if colours[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=font_size)
    return _save_png(fig, path_png)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _curve_keys(validation_records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Validation metrics for the right panel: the known headline ones, else every scalar but loss."""
    present: list[str] = []
    for record in validation_records:
        present.extend(k for k, v in record.items() if _is_number(v) and k not in present)
    preferred = [k for k in _CURVE_METRICS if k in present]
    return preferred or [k for k in present if k not in ("loss", "num_examples")]


def _plot_series(ax: Any, records: Sequence[tuple[float, Mapping[str, Any]]], key: str, label: str) -> None:
    """Plots ``record[key]`` against x for the records that have a number under ``key``."""
    xs = [x for x, record in records if _is_number(record.get(key))]
    ys = [float(record[key]) for _, record in records if _is_number(record.get(key))]
    if xs:
        ax.plot(xs, ys, marker="o", label=label)


def save_training_curves(history: list[dict], path_png: str | Path) -> Path:
    """Plots training loss and validation metrics per epoch in two panels, written atomically.

    Args:
        history: Epoch (or step) records such as
            ``{"epoch": 1.0, "train_loss": 0.5, "validation": {"accuracy": 0.8, "f1_macro": 0.79,
            "loss": 0.4}}``. Records may lack ``train_loss`` or ``validation``; a missing ``epoch``
            is replaced by the record's 1-based position.
        path_png: Destination file; the parent folder is created if needed.

    Returns:
        The path of the written PNG.
    """
    # Pair each record with its x position; records without an epoch get their 1-based position.
    records = [(float(r.get("epoch", i + 1)), r) for i, r in enumerate(history)]
    validation = [(x, r["validation"]) for x, r in records if isinstance(r.get("validation"), Mapping)]
    fig = _new_figure(12.0, 4.5)
    loss_ax, metric_ax = fig.subplots(1, 2)

    _plot_series(loss_ax, records, "train_loss", "train loss")
    _plot_series(loss_ax, validation, "loss", "validation loss")
    loss_ax.set_title("Loss")
    for key in _curve_keys([v for _, v in validation]):
        _plot_series(metric_ax, validation, key, key)
    metric_ax.set_title("Validation metrics")

    for ax in (loss_ax, metric_ax):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    return _save_png(fig, path_png)
