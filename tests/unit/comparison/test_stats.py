"""Scores from saved predictions match sklearn / seqeval; the vectorised bootstrap resamples what it says."""

from __future__ import annotations

import numpy as np
import pytest
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, f1_score

from transferkit.comparison.stats import (
    bootstrap_gain_from_scores,
    example_counts,
    paired_bootstrap_gain,
    score_from_counts,
    score_predictions,
)

RNG = np.random.default_rng(7)
LABELS = np.array(["a", "b", "c", "d"])
Y_TRUE = RNG.choice(LABELS, 300).tolist()
Y_PRED = [t if RNG.random() < 0.6 else str(RNG.choice(LABELS)) for t in Y_TRUE]


def _tags(rng: np.random.Generator, n: int) -> list[list[str]]:
    choices = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    return [list(rng.choice(choices, rng.integers(1, 8))) for _ in range(n)]


TAGS_TRUE = _tags(RNG, 120)
TAGS_PRED = [
    [t if RNG.random() < 0.7 else str(RNG.choice(["O", "B-PER", "I-LOC"])) for t in s] for s in TAGS_TRUE
]
MATCHES = (RNG.random(200) < 0.3).tolist()

CASES = {
    "f1_macro": (Y_TRUE, Y_PRED, f1_score(Y_TRUE, Y_PRED, average="macro")),
    "accuracy": (Y_TRUE, Y_PRED, accuracy_score(Y_TRUE, Y_PRED)),
    "f1": (TAGS_TRUE, TAGS_PRED, seqeval_f1(TAGS_TRUE, TAGS_PRED, mode="strict", scheme=IOB2)),
    "exact_match": (None, MATCHES, float(np.mean(MATCHES))),
}


@pytest.mark.parametrize("metric", CASES)
def test_score_predictions_matches_reference(metric: str) -> None:
    y_true, y_pred, expected = CASES[metric]
    assert 0.05 < expected < 0.95  # the data is not degenerate
    assert score_predictions(metric, y_true, y_pred) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("metric", CASES)
def test_weighted_counts_equal_scoring_the_resample(metric: str) -> None:
    """weights @ counts (the vectorised replicate) == the metric of the explicitly resampled examples."""
    y_true, y_pred, _ = CASES[metric]
    n = len(y_pred)
    counts = example_counts(metric, y_true, y_pred)
    idx = np.random.default_rng(1).integers(0, n, n)
    weights = np.bincount(idx, minlength=n)[None, :].astype(float)
    fast = score_from_counts(metric, weights @ counts, weights.sum(1))[0]
    slow = score_predictions(
        metric, None if y_true is None else [y_true[i] for i in idx], [y_pred[i] for i in idx]
    )
    assert fast == pytest.approx(slow, abs=1e-9)


def test_unknown_metric_and_bad_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="perplexity"):
        score_predictions("perplexity", ["a"], ["a"])
    with pytest.raises(ValueError, match="length"):
        score_predictions("accuracy", ["a", "b"], ["a"])


def _arm(rng: np.random.Generator, y: np.ndarray, p_right: float, seeds: int) -> list[list[str]]:
    out = []
    for _ in range(seeds):
        right = rng.random(len(y)) < p_right
        out.append(np.where(right, y, np.where(y == "a", "b", "a")).tolist())
    return out


def _gain(n: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    y = rng.choice(["a", "b"], n)
    return paired_bootstrap_gain(
        "accuracy", y.tolist(), _arm(rng, y, 0.8, 3), _arm(rng, y, 0.6, 3), n_boot=500
    )


def test_ci_brackets_the_true_difference_and_shrinks_with_more_examples() -> None:
    small, large = _gain(200), _gain(5000)
    for g in (small, large):
        assert g.method == "seeds x test examples"
        assert g.low < 0.2 < g.high  # true accuracy difference: 0.8 - 0.6
        assert g.low < g.estimate < g.high
    assert (large.high - large.low) < 0.5 * (small.high - small.low)
    assert large.n_examples == 5000 and large.n_seeds == (3, 3)


def test_identical_arms_have_zero_gain_and_a_zero_width_interval() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice(["a", "b"], 100)
    preds = _arm(rng, y, 0.7, 2)
    g = paired_bootstrap_gain("f1_macro", y.tolist(), preds, preds, n_boot=200)
    assert g.estimate == 0.0 and g.low == 0.0 and g.high == 0.0  # same indices and seeds for both arms


def test_bootstrap_is_reproducible() -> None:
    assert _gain(300, seed=4) == _gain(300, seed=4)


def test_seeds_only_fallback() -> None:
    g = bootstrap_gain_from_scores([0.8, 0.82, 0.78], [0.6, 0.62, 0.61])
    assert g.method == "seeds only" and g.low <= g.estimate <= g.high
    assert g.estimate == pytest.approx(0.8 - 0.61)
    one = bootstrap_gain_from_scores([0.8], [0.6])
    assert one.low is None and one.high is None and one.estimate == pytest.approx(0.2)
