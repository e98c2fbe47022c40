"""Scores recomputed from saved predictions, and the paired bootstrap behind a compare report's gains.

Every metric a compare can rank by is a function of a few per-example counts (for macro-F1: true
positives, false positives and false negatives per class; for entity F1: matched, predicted and true
entities per sentence). Resampling test examples with replacement is the same as weighting each example by
how often it was drawn, so one replicate of a whole arm is a matrix product ``weights @ counts`` instead of
a Python loop over examples: B = 1000 replicates of a 10,000-example test set cost milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS = ("f1_macro", "accuracy", "f1", "exact_match")
_CHUNK = 200  # replicates per block: keeps the (block, N) weight matrix small for large test sets


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"cannot score {metric!r} from predictions; known: {', '.join(METRICS)}")


def score_predictions(metric: str, y_true: Sequence[Any] | None, y_pred: Sequence[Any]) -> float:
    """The compare's main metric recomputed from one cell's test predictions.

    Args:
        metric: ``f1_macro`` or ``accuracy`` (label per example), ``f1`` (seqeval strict IOB2 entity F1 over
            lists of tags per sentence) or ``exact_match`` (``y_pred`` holds one boolean per example:
            whether the generation matched; ``y_true`` is ignored and may be None).
        y_true: True labels or tag lists, in test order.
        y_pred: Predicted labels or tag lists (booleans for ``exact_match``), same order and length.

    Returns:
        The score as a float.

    Raises:
        ValueError: For an unknown metric or predictions of a different length.

    Example:
        >>> score_predictions("accuracy", ["a", "b"], ["a", "a"])
        0.5
    """
    _check_metric(metric)
    if metric == "exact_match":
        return float(np.mean(np.asarray(y_pred, dtype=float))) if len(y_pred) else 0.0
    if y_true is None or len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    if metric == "f1":
        from transferkit.evaluation.ner import entity_metrics

        return float(entity_metrics([list(s) for s in y_true], [list(s) for s in y_pred])["f1"])
    # sklearn, scipy, pandas ... load on first use, not when stats is imported
    from sklearn.metrics import accuracy_score, f1_score

    true, pred = [str(v) for v in y_true], [str(v) for v in y_pred]
    if metric == "accuracy":
        return float(accuracy_score(true, pred))
    return float(f1_score(true, pred, average="macro", zero_division=0))


def _entity_counts(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> np.ndarray:
    """(N, 3): matched, predicted and true entities per sentence, with entity_metrics' strict IOB2."""
    # seqeval load on first use, not when stats is imported
    from seqeval.scheme import IOB2, Entities

    true = Entities([list(s) for s in y_true], IOB2).entities
    pred = Entities([list(s) for s in y_pred], IOB2).entities
    rows = []
    for t, p in zip(true, pred, strict=True):
        t_set, p_set = {e.to_tuple() for e in t}, {e.to_tuple() for e in p}
        rows.append((len(t_set & p_set), len(p_set), len(t_set)))
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def example_counts(metric: str, y_true: Sequence[Any] | None, y_pred: Sequence[Any]) -> np.ndarray:
    """Per-example counts (N, K) from which :func:`score_from_counts` computes ``metric`` for any weighting."""
    _check_metric(metric)
    if metric == "exact_match":
        return np.asarray(y_pred, dtype=float).reshape(-1, 1)
    if y_true is None or len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    if metric == "f1":
        return _entity_counts(y_true, y_pred)
    true, pred = np.asarray([str(v) for v in y_true]), np.asarray([str(v) for v in y_pred])
    if metric == "accuracy":
        return (true == pred).astype(float).reshape(-1, 1)
    labels = np.unique(np.concatenate([true, pred]))
    t = true[:, None] == labels[None, :]  # (N, C)
    p = pred[:, None] == labels[None, :]
    # (N, 3C): [tp per class | fp per class | fn per class]
    return np.concatenate([t & p, ~t & p, t & ~p], axis=1).astype(float)


def score_from_counts(metric: str, summed: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The metric of each replicate from its weighted count sums.

    Args:
        metric: One of :data:`METRICS`.
        summed: (B, K) = weights @ :func:`example_counts`.
        total: (B,) sum of the weights (the resampled test-set size).

    Returns:
        (B,) scores.
    """
    if metric in ("accuracy", "exact_match"):
        return summed[:, 0] / np.maximum(total, 1)
    if metric == "f1":
        tp, n_pred, n_true = summed[:, 0], summed[:, 1], summed[:, 2]
        denom = n_pred + n_true
        return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    tp, fp, fn = np.split(summed, 3, axis=1)  # (B, C) each
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0  # sklearn averages over the labels that occur in y_true or y_pred
    return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


@dataclass(frozen=True)
class Gain:
    """One arm minus another, with a bootstrap 95% interval.

    Attributes:
        estimate: Mean over seeds of arm A's metric minus the mean of arm B's.
        low / high: The 2.5th and 97.5th percentiles of the bootstrap differences (None: no interval, e.g.
            one seed of each and no predictions).
        method: ``"seeds x test examples"`` or ``"seeds only"``.
        n_seeds: (seeds of A, seeds of B).
        n_examples: Test examples resampled (0 for ``"seeds only"``).
    """

    estimate: float
    low: float | None
    high: float | None
    method: str
    n_seeds: tuple[int, int]
    n_examples: int = 0


def _percentiles(diffs: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def _seed_draws(
    rng: np.random.Generator, n_a: int, n_b: int, n_boot: int, paired: bool | None
) -> tuple[np.ndarray, np.ndarray]:
    """Seed indices per replicate, (B, S_a) and (B, S_b); the same draws for both arms when paired
    (default: when both arms have as many seeds)."""
    paired = n_a == n_b if paired is None else paired and n_a == n_b
    draws_a = rng.integers(0, n_a, size=(n_boot, n_a))
    draws_b = draws_a if paired else rng.integers(0, n_b, size=(n_boot, n_b))
    return draws_a, draws_b


def bootstrap_gain_from_scores(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    paired: bool | None = None,
) -> Gain:
    """Seeds-only bootstrap of mean(A) - mean(B), for cells whose predictions are missing.

    Args:
        scores_a / scores_b: One test score per seed of each arm.
        n_boot: Replicates.
        seed: Seed of the resampling.
        paired: Draw the same seeds for both arms (seed i of A and of B saw the same data subset); default:
            when both arms have as many seeds.
    """
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    estimate = float(a.mean() - b.mean())
    if len(a) < 2 and len(b) < 2:
        return Gain(estimate, None, None, "seeds only", (len(a), len(b)))
    draws_a, draws_b = _seed_draws(np.random.default_rng(seed), len(a), len(b), n_boot, paired)
    diffs = a[draws_a].mean(axis=1) - b[draws_b].mean(axis=1)
    return Gain(estimate, *_percentiles(diffs), "seeds only", (len(a), len(b)))


def paired_bootstrap_gain(
    metric: str,
    y_true: Sequence[Any] | None,
    preds_a: Sequence[Sequence[Any]],
    preds_b: Sequence[Sequence[Any]],
    n_boot: int = 1000,
    seed: int = 0,
    paired: bool | None = None,
) -> Gain:
    """Paired bootstrap of mean(A) - mean(B) over seeds and test examples.

    Each replicate draws seeds with replacement (paired by position when both arms have as many seeds)
    and one set of test indices with replacement, used for both arms and every seed, recomputes each
    seed's metric on those indices and averages over the drawn seeds.

    Args:
        metric: One of :data:`METRICS`.
        y_true: The shared test labels (None for ``exact_match``).
        preds_a / preds_b: One prediction list per seed of arm A (the transfer strategy) and arm B (the
            baseline), all over the same test examples in the same order.
        n_boot: Replicates.
        seed: Seed of the resampling (the report is reproducible).
        paired: Draw the same seeds for both arms; default: when both arms have as many seeds.

    Returns:
        A :class:`Gain` with ``method="seeds x test examples"``.

    Raises:
        ValueError: For an unknown metric, an empty arm or predictions of different lengths.

    Example:
        >>> g = paired_bootstrap_gain("accuracy", y, [lpft_s0, lpft_s1], [scratch_s0])  # doctest: +SKIP
        >>> g.low < g.estimate < g.high  # doctest: +SKIP
        True
    """
    if not preds_a or not preds_b:
        raise ValueError("both arms need at least one seed of predictions")
    counts_a = [example_counts(metric, y_true, p) for p in preds_a]  # S_a x (N, K)
    counts_b = [example_counts(metric, y_true, p) for p in preds_b]
    n = counts_a[0].shape[0]
    if any(c.shape[0] != n for c in counts_a + counts_b):
        raise ValueError("predictions of the two arms cover different numbers of test examples")
    full = np.ones((1, n))
    estimate = float(
        np.mean([score_from_counts(metric, full @ c, full.sum(1))[0] for c in counts_a])
        - np.mean([score_from_counts(metric, full @ c, full.sum(1))[0] for c in counts_b])
    )
    rng = np.random.default_rng(seed)
    per_seed_a = np.empty((len(counts_a), n_boot))  # (S_a, B): each seed's metric in each replicate
    per_seed_b = np.empty((len(counts_b), n_boot))
    for start in range(0, n_boot, _CHUNK):
        size = min(_CHUNK, n_boot - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)  # (b, N) draw counts
        total = weights.sum(axis=1)
        for arm, counts in ((per_seed_a, counts_a), (per_seed_b, counts_b)):
            for s, c in enumerate(counts):
                arm[s, start : start + size] = score_from_counts(metric, weights @ c, total)
    draws_a, draws_b = _seed_draws(rng, len(counts_a), len(counts_b), n_boot, paired)
    cols = np.arange(n_boot)[:, None]
    diffs = per_seed_a[draws_a, cols].mean(axis=1) - per_seed_b[draws_b, cols].mean(axis=1)
    return Gain(estimate, *_percentiles(diffs), "seeds x test examples", (len(preds_a), len(preds_b)), n)
