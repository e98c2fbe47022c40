"""The one way every task holds out validation / test examples and subsamples them.

Text and image classification (:mod:`transferkit.data.splits`), token classification
(:mod:`transferkit.tasks.token_classification.sources`) and generation
(:mod:`transferkit.tasks.generation.sources`) all call :func:`hold_out` and :func:`subsample`, so one
configuration splits every task the same way:

- **Sizes.** When no validation / test file is given, ``data.validation_size`` and ``data.test_size`` are
  fractions of the *whole* training file: of ``n`` training examples, ``ceil(test_size * n)`` go to test,
  ``ceil(validation_size * n)`` to validation and the rest stay in train (``0.1`` / ``0.1`` of 200 examples:
  20 / 20 / 160). A part given as a file is not split off, and the other part keeps its size.
- **Order and RNG.** Test is split off the whole file first, then validation off the rest, both by
  scikit-learn's ``train_test_split`` with ``random_state=data.split_seed``: one numpy ``RandomState``
  seeded from ``data.split_seed`` per draw (the draw text classification has always used, so its splits
  did not move). Index arrays come back in that draw's order.
- **Stratification.** With one label per example (text ``single_label``, images) the draws are stratified
  by label; when a class is too rare to stratify, the draw is repeated without stratification and a warning
  is logged (logger ``transferkit.data``). Otherwise (multi-label, regression, tokens, generation) it is a
  plain seeded shuffle, so with the same number of examples and the same seed the same positions land in
  validation and test whatever the task.
- **Subsamples.** ``data.max_train_samples`` / ``data.max_eval_samples`` keep a seeded subsample of each
  split (the same draw, stratified likewise), in the split's order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from transferkit.errors import DataError

logger = logging.getLogger("transferkit.data")


@dataclass(frozen=True)
class HeldOut:
    """Positions (into the training source) of each part; ``None`` for a part given as a file."""

    train: np.ndarray
    validation: np.ndarray | None
    test: np.ndarray | None


def _reason(err: ValueError) -> str:
    """The first sentence of scikit-learn's message (the rest repeats it)."""
    return str(err).split(". ")[0].strip().rstrip(".")


def _draw(
    n: int, held: int, seed: int, labels: Sequence[Any] | None, source: str, what: str, unit: str
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) positions of ``range(n)``: ``held`` of them drawn, stratified by ``labels`` if given."""
    try:
        kept, out = train_test_split(np.arange(n), test_size=held, random_state=seed, stratify=labels)
    except ValueError as err:
        if labels is None:
            raise DataError(
                f"{source}: only {n} {unit} left, too few to split off the {what} set ({_reason(err)}); "
                f"give a {what} file or more data"
            ) from None
        logger.warning(
            "%s: cannot stratify the %s split (%s); splitting without stratification",
            source,
            what,
            _reason(err),
        )
        return _draw(n, held, seed, None, source, what, unit)
    return kept, out


def hold_out(
    n: int,
    validation_size: float | None,
    test_size: float | None,
    seed: int,
    labels: Sequence[Any] | None = None,
    source: str = "train",
    unit: str = "example(s)",
) -> HeldOut:
    """Splits test, then validation, off ``n`` training examples (see the module docstring).

    Args:
        n: Number of examples in the training source.
        validation_size: Fraction of the ``n`` examples held out for validation; ``None`` when a
            validation file is given.
        test_size: Fraction of the ``n`` examples held out for test; ``None`` when a test file is given.
        seed: ``data.split_seed``.
        labels: One label per example to stratify by, or ``None`` for a plain seeded shuffle.
        source: The training source, named in messages.
        unit: What the examples are called in messages ("row(s)", "sentence(s)").

    Returns:
        Positions of the train, validation and test examples.

    Raises:
        DataError: when too few examples are left to split a part off.

    Example:
        >>> parts = hold_out(200, 0.1, 0.1, seed=42)
        >>> len(parts.train), len(parts.validation), len(parts.test)
        (160, 20, 20)
    """
    train = np.arange(n)
    codes = None if labels is None else np.asarray(labels, dtype=object)
    test = validation = None
    if test_size is not None:
        kept, test = _draw(n, math.ceil(test_size * n), seed, codes, source, "test", unit)
        train = train[kept]
    if validation_size is not None:
        sub = None if codes is None else codes[train]
        count = math.ceil(validation_size * n)  # of the whole file, not of what test left
        kept, held = _draw(len(train), count, seed, sub, source, "validation", unit)
        train, validation = train[kept], train[held]
    return HeldOut(train, validation, test)


def subsample(
    n: int, limit: int | None, seed: int, labels: Sequence[Any] | None = None, source: str = "train"
) -> np.ndarray:
    """Sorted positions of a seeded subsample of ``limit`` of ``n`` examples (all of them when ``limit``
    is ``None`` or not below ``n``), stratified by ``labels`` when given and possible."""
    if limit is None or n <= limit:
        return np.arange(n)
    try:
        kept, _ = train_test_split(np.arange(n), train_size=limit, random_state=seed, stratify=labels)
    except ValueError as err:
        if labels is None:
            raise
        logger.warning(
            "%s: cannot stratify the subsample of %d rows (%s); sampling without stratification",
            source,
            limit,
            _reason(err),
        )
        kept, _ = train_test_split(np.arange(n), train_size=limit, random_state=seed)
    return np.sort(kept)
