"""Evaluation: metrics for every problem type, metric tables and PNG plots.

Importing this package is cheap: scikit-learn, rich and matplotlib are imported on first use.
"""

from transferkit.evaluation.metrics import (
    classification_metrics,
    format_metrics_table,
    greater_is_better,
    is_better,
    multilabel_metrics,
    primary_metric,
    regression_metrics,
)
from transferkit.evaluation.plots import save_confusion_matrix, save_training_curves

__all__ = [
    "classification_metrics",
    "format_metrics_table",
    "greater_is_better",
    "is_better",
    "multilabel_metrics",
    "primary_metric",
    "regression_metrics",
    "save_confusion_matrix",
    "save_training_curves",
]
