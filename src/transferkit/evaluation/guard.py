"""The guard against ending below the pretrained baseline.

Every run that computes the pretrained baseline (a linear probe on frozen features; for generation, the
backbone before fine-tuning) compares the fine-tuned model with it on validation, the split that also chose
the best checkpoint and the probe's L2 strength. A fine-tuned model that scores below it is a failed run: the
run says so in one line, records the warning in ``metrics.json`` (``warnings``), and, with
``evaluation.keep_better`` (default on), keeps the baseline as the run's model, so ``predict`` and ``serve``
never get the worse one. The discarded model's scores stay in ``metrics.json`` under ``fine_tuned``.

"Below" uses the threshold a probe-initialised run needs to leave its start (``training.min_delta``, see
:mod:`~transferkit.training.best`): a fine-tuned model ahead of the baseline by no more than that (two
validation examples' worth by default) is not shown to be better, and the baseline is kept. A score equal to the baseline's (a
closed-form probe is the baseline itself; a head that never left its probe start) keeps the run's model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from transferkit.evaluation.metrics import is_better

log = logging.getLogger("transferkit")
TOLERANCE = 1e-9  # equal scores (a closed-form probe is the baseline itself) are not "below"


def below_baseline(metrics: dict, metric: str, min_delta: float = 0.0) -> str | None:
    """A one-line warning when the fine-tuned validation ``metric`` is worse than the baseline's, or ahead of
    it by no more than ``min_delta``; else None."""
    base = metrics.get("pretrained_baseline", {}).get("validation", {}).get(metric)
    tuned = metrics.get("validation", {}).get(metric)
    if base is None or tuned is None or abs(base - tuned) <= TOLERANCE:
        return None
    if is_better(metric, base, tuned):
        return f"the fine-tuned model's validation {metric} ({tuned:.4f}) is below the pretrained baseline's ({base:.4f})"
    if is_better(metric, tuned, base, min_delta):
        return None
    return (
        f"the fine-tuned model's validation {metric} ({tuned:.4f}) is within training.min_delta ({min_delta:.4f}) "
        f"of the pretrained baseline's ({base:.4f}), not shown to be better"
    )


def keep_better(
    metrics: dict,
    metric: str,
    keep: bool,
    baseline_model: Callable[[], Any],
    baseline_scores: Callable[[Any], dict[str, dict]] | None = None,
    min_delta: float = 0.0,
) -> Any | None:
    """Applies the guard to a finished run's ``metrics`` (updated in place).

    Args:
        metrics: The run's metrics, with ``validation``, ``test`` and ``pretrained_baseline``.
        metric: The validation metric that chose the best checkpoint.
        keep: ``evaluation.keep_better``: replace the fine-tuned model by the baseline when it is worse.
        baseline_model: Builds the baseline as a model of the run's kind (called only when it is kept).
        baseline_scores: ``scores(model) -> {"validation": ..., "test": ...}`` of the built baseline; None
            takes the baseline's recorded scores (they are the same model's).
        min_delta: The smallest validation improvement that counts (``training.min_delta`` resolved).

    Returns:
        The baseline model to save instead of the fine-tuned one, or None to keep the fine-tuned model.
    """
    warning = below_baseline(metrics, metric, min_delta)
    metrics["model"] = "fine_tuned"
    if warning is None:
        return None
    metrics.setdefault("warnings", [])
    if not keep:
        warning += "; kept the fine-tuned model (evaluation.keep_better=false)"
        log.warning(warning)
        metrics["warnings"].append(warning)
        return None
    warning += (
        "; the run's model is the pretrained baseline (evaluation.keep_better=false keeps the fine-tuned one)"
    )
    log.warning(warning)
    metrics["warnings"].append(warning)
    model = baseline_model()
    scores = baseline_scores(model) if baseline_scores is not None else metrics["pretrained_baseline"]
    metrics["fine_tuned"] = {split: metrics[split] for split in ("validation", "test")}
    for split in ("validation", "test"):
        metrics[split] = scores[split]
    metrics["model"] = "pretrained_baseline"
    return model
