"""From-scratch baselines that are not a neural run (used by ``transferkit compare``).

Each baseline takes the cell's frames (``train`` / ``validation`` / ``test`` in the catalog's columns) and
returns ``{"validation": float, "test": float, "test_metrics": {...}, "predictions": {"y_true", "y_pred"}}``
on the task's main metric, so the report scores them like every other cell. The classical baseline of
each task lives in its package (``tasks/<task>/baselines.py``) and is named by its :class:`TaskSpec`;
the majority class is shared by every classifying task.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd


def classification_result(y: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict:
    """Macro-F1 / accuracy of class-name predictions on validation and test, in the baselines' shape."""
    # sklearn, scipy, psutil ... load on first use, not when baselines is imported
    from sklearn.metrics import accuracy_score, f1_score

    def f1(split: str) -> float:
        return float(f1_score(y[split], pred[split], average="macro", zero_division=0))

    return {
        "validation": f1("validation"),
        "test": f1("test"),
        "test_metrics": {"f1_macro": f1("test"), "accuracy": float(accuracy_score(y["test"], pred["test"]))},
        "predictions": {"y_true": list(map(str, y["test"])), "y_pred": list(map(str, pred["test"]))},
    }


def logistic_regression(x: dict, y: dict[str, np.ndarray]) -> dict:
    """Logistic regression on ``x`` (train / validation / test), C chosen on validation macro-F1."""
    # sklearn, scipy, psutil ... load on first use, not when baselines is imported
    from sklearn.linear_model import LogisticRegression

    # sklearn, scipy, psutil ... load on first use, not when baselines is imported
    from sklearn.metrics import f1_score

    best = None
    for c in (0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=3000).fit(x["train"], y["train"])
        val = f1_score(y["validation"], model.predict(x["validation"]), average="macro", zero_division=0)
        if best is None or val > best[0]:
            best = (val, model)
    return classification_result(y, {s: best[1].predict(x[s]) for s in ("validation", "test")})


def majority(frames: dict[str, pd.DataFrame], label_column: str = "label") -> dict:
    """Always the most frequent training class."""
    top = Counter(frames["train"][label_column].astype(str)).most_common(1)[0][0]
    y = {s: frames[s][label_column].astype(str).to_numpy() for s in ("validation", "test")}
    return classification_result(y, {s: np.full(len(y[s]), top, dtype=object) for s in y})
