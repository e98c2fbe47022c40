"""From configured sources to validated train / validation / test frames.

:func:`load_splits` is the one way examples enter a run, whether they come from user files, from pandas
DataFrames (Python API) or from the catalog (which is read like any user file). It:

1. reads each source and keeps two columns, ``data.text_column`` renamed to ``text`` and
   ``data.label_column`` renamed to ``label``;
2. checks every row (non-empty text, a label) and parses labels for the problem: a class name (``str``;
   the integer 1 becomes ``"1"``) for single_label, a list of names (cells split on
   ``data.label_separator``, or real lists in JSONL/Parquet/DataFrames) for multi_label, a ``float`` for
   regression;
3. splits what is missing from train with :func:`transferkit.data.split.hold_out`, the split every task
   shares: ``data.test_size`` and ``data.validation_size`` are fractions of the whole training file,
   drawn with ``data.split_seed``, stratified by label for single_label (plain seeded shuffle for
   multi_label and regression); when a class is too rare to stratify, the draw falls back to an
   unstratified one and logs a warning;
4. subsamples train to ``data.max_train_samples`` and validation and test to ``data.max_eval_samples``
   each (:func:`transferkit.data.split.subsample`: seeded, stratified for single_label);
5. refuses validation/test labels never seen in training and fewer than two classes, and warns (logger
   ``transferkit.data``) about heavy class imbalance and texts shared by train and test.

Error messages name the file and the 1-based data row (the header is not counted).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transferkit.config import DataConfig
from transferkit.data.catalog import DATASETS, load_catalog_dataset
from transferkit.data.readers import read_table
from transferkit.data.split import hold_out, subsample
from transferkit.errors import DataError

logger = logging.getLogger("transferkit.data")

PROBLEMS = ("single_label", "multi_label", "regression")
SPLITS = ("train", "validation", "test")
IMBALANCE_RATIO = 5.0
_ROW = "_row"  # 1-based data row in the source, kept while validating so messages can point at it


@dataclass
class DatasetSplits:
    """Validated examples of one run.

    Attributes:
        train: Columns ``text`` (str) and ``label``: str (single_label), list[str] (multi_label) or
            float (regression).
        validation: Same columns as train.
        test: Same columns as train.
        labels: Sorted class names seen in the training split (before ``max_train_samples``, so label
            budgets of one data set share one label space); ``[]`` for regression.
        source: Where the examples came from, e.g. ``"rotten_tomatoes (catalog)"`` or ``"data/train.csv"``.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]
    source: str


@dataclass
class _Part:
    frame: pd.DataFrame  # columns text, label, _row
    source: str  # file or description named in messages
    from_train: bool = False  # split off the training source


def _rows(frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> tuple[int, int]:
    """First offending 1-based row and how many rows offend."""
    hits = frame.loc[np.asarray(mask, dtype=bool), _ROW]
    return int(hits.iloc[0]), len(hits)


def _fail(part_source: str, first: int, count: int, what: str, fix: str) -> DataError:
    more = f" (and {count - 1} more row{'s' if count > 2 else ''})" if count > 1 else ""
    return DataError(f"{part_source} row {first}: {what}{more}; {fix}")


def _is_missing(value: Any) -> bool:
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    if isinstance(value, str):
        return not value.strip()
    return bool(pd.isna(value))  # None, NaN, pd.NA, NaT


def _class_name(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 1.0 -> "1": integer codes that pandas read as floats
    return str(value).strip()


def _label_list(value: Any, separator: str) -> list[str]:
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else str(value).split(separator)
    names = [_class_name(item) for item in items if not _is_missing(item)]
    return list(dict.fromkeys(name for name in names if name))  # drop empties and repeats, keep order


def _parse_labels(part: _Part, problem: str, separator: str) -> pd.Series:
    labels = part.frame["label"]
    # An explicit empty list (JSONL/DataFrame) is a multi-label example with no labels; an empty cell is missing.
    missing = labels.map(_is_missing)
    if missing.any():
        first, count = _rows(part.frame, missing)
        raise _fail(part.source, first, count, "missing label", "fill in the label or remove the row")
    if problem == "single_label":
        return labels.map(_class_name).astype(object)
    if problem == "multi_label":
        return labels.map(lambda v: _label_list(v, separator)).astype(object)
    values = []
    for row, value in zip(part.frame[_ROW], labels, strict=True):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise DataError(
                f"{part.source} row {row}: label {value!r} is not a number; regression needs numeric labels "
                "(or set task.problem=single_label)"
            )
        values.append(number)
    return pd.Series(values, index=labels.index, dtype=float)


def _prepare(
    raw: pd.DataFrame, source: str, text_column: str, label_column: str, problem: str, separator: str
) -> _Part:
    """Maps columns to text/label and validates every row."""
    for column in (text_column, label_column):
        if column not in raw.columns:
            columns = ", ".join(str(c) for c in raw.columns)
            raise DataError(
                f"{source}: no column {column!r} (columns: {columns}); set --text-column/--label-column"
            )
    if len(raw) == 0:
        raise DataError(f"{source}: no rows")
    frame = pd.DataFrame(
        {
            "text": raw[text_column].to_numpy(dtype=object),
            "label": raw[label_column].to_numpy(dtype=object),
            _ROW: np.arange(1, len(raw) + 1),
        }
    )
    part = _Part(frame, source)
    text = frame["text"].map(lambda v: None if _is_missing(v) else str(v))
    empty = text.isna().to_numpy()
    if empty.any():
        first, count = _rows(frame, empty)
        raise _fail(source, first, count, "empty text", "fill in the text or remove the row")
    frame["text"] = text.astype(object)
    frame["label"] = _parse_labels(part, problem, separator)
    return part


def _read_sources(
    cfg: DataConfig, problem: str, frames: dict[str, pd.DataFrame] | None, task: str = "text-classification"
) -> tuple[dict[str, _Part], str]:
    """Reads the configured sources; returns the parts found and the human-readable source."""
    frames = dict(frames or {})
    unknown = sorted(set(frames) - set(SPLITS))
    if unknown:
        raise DataError(f"frames: unknown split(s) {', '.join(unknown)}; use train, validation, test")
    sep = cfg.label_separator
    parts: dict[str, _Part] = {}
    source = ""
    if cfg.dataset and "train" not in frames:
        entry = DATASETS.entry(cfg.dataset)
        made_for = entry.extra.get("task", "text-classification")
        if made_for != task:
            raise DataError(f"data set {cfg.dataset!r} is for {made_for}; set --task {made_for}")
        if entry.extra.get("problem", "single_label") != problem:
            raise DataError(
                f"data set {cfg.dataset!r} is {entry.extra.get('problem')}; set task.problem={entry.extra.get('problem')}"
            )
        catalog = load_catalog_dataset(cfg.dataset)
        for split, raw in catalog.items():
            parts[split] = _prepare(raw, f"{cfg.dataset}/{split} (catalog)", "text", "label", problem, sep)
        source = f"{cfg.dataset} (catalog)"
    for split in SPLITS:
        if split in frames:
            raw = frames[split]
            if not isinstance(raw, pd.DataFrame):
                raise DataError(f"frames[{split!r}]: expected a pandas DataFrame, got {type(raw).__name__}")
            parts[split] = _prepare(
                raw, f"DataFrame {split!r}", cfg.text_column, cfg.label_column, problem, sep
            )
        elif getattr(cfg, split):
            path = str(getattr(cfg, split))
            parts[split] = _prepare(read_table(path), path, cfg.text_column, cfg.label_column, problem, sep)
    if "train" not in parts:
        raise DataError("no training data: set data.dataset (e.g. rotten_tomatoes) or data.train (a file)")
    if not source or "train" in frames:
        source = parts["train"].source
    return parts, source


def _held(part: _Part, positions: np.ndarray, from_train: bool) -> _Part:
    return _Part(part.frame.iloc[positions].reset_index(drop=True), part.source, from_train)


def _subsample(part: _Part, limit: int | None, seed: int, stratify: bool) -> _Part:
    labels = part.frame["label"] if stratify else None
    return _held(part, subsample(len(part.frame), limit, seed, labels, part.source), part.from_train)


def _label_counts(frame: pd.DataFrame, problem: str) -> Counter[str]:
    if problem == "multi_label":
        return Counter(name for names in frame["label"] for name in names)
    return Counter(frame["label"])


def _check_unseen(part: _Part, seen: set[str], problem: str) -> None:
    first_row: dict[str, int] = {}
    for row, label in zip(part.frame[_ROW], part.frame["label"], strict=True):
        for name in label if problem == "multi_label" else [label]:
            if name not in seen and name not in first_row:
                first_row[name] = int(row)
    if not first_row:
        return
    listed = ", ".join(f"{name!r} (row {row})" for name, row in list(first_row.items())[:5])
    more = f" and {len(first_row) - 5} more" if len(first_row) > 5 else ""
    hint = " (too few examples to reach every split)" if part.from_train else ""
    raise DataError(
        f"{part.source}: label(s) never seen in training{hint}: {listed}{more}; "
        "add training examples with these labels or remove these rows"
    )


def _warn(train: pd.DataFrame, test: pd.DataFrame, problem: str) -> None:
    if problem != "regression":
        counts = _label_counts(train, problem).most_common()
        (big, n_big), (small, n_small) = counts[0], counts[-1]
        if n_small and n_big / n_small > IMBALANCE_RATIO:
            logger.warning(
                "training labels are imbalanced: %r has %d examples, %r only %d (%.1fx); "
                "consider training.class_weights=auto",
                big,
                n_big,
                small,
                n_small,
                n_big / n_small,
            )
    shared = int(test["text"].isin(set(train["text"])).sum())
    if shared:
        logger.warning(
            "%d test text(s) also appear in train; deduplicate the data so the test score is not inflated",
            shared,
        )


def load_splits(
    cfg: DataConfig,
    problem: str = "single_label",
    frames: dict[str, pd.DataFrame] | None = None,
    task: str = "text-classification",
) -> DatasetSplits:
    """Reads, validates, splits and subsamples the examples of a run.

    Args:
        cfg: The data section of the run configuration.
        problem: "single_label", "multi_label" or "regression"; decides how labels are parsed.
        frames: DataFrames for "train", "validation" and/or "test" used instead of files (Python API);
            ``cfg.text_column``/``cfg.label_column`` still name their columns.
        task: The run's task; a catalog data set made for another task is refused.

    Returns:
        The three splits with columns ``text`` and ``label``, the sorted labels and a source description.

    Raises:
        DataError: for an unreadable file, a missing column, an empty text or label, a non-numeric
            regression label, an evaluation label never seen in training or fewer than two classes.

    Example:
        >>> splits = load_splits(DataConfig(dataset="rotten_tomatoes"))  # doctest: +SKIP
        >>> splits.labels  # doctest: +SKIP
        ['fresh', 'rotten']
    """
    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}, not {problem!r}")
    parts, source = _read_sources(cfg, problem, frames, task)
    stratify = problem == "single_label"
    seed = cfg.split_seed
    train = parts["train"]
    if problem != "regression" and len(_label_counts(train.frame, problem)) < 2:
        names = ", ".join(repr(n) for n in sorted(_label_counts(train.frame, problem))) or "none"
        raise DataError(
            f"{train.source}: {problem} needs at least two classes in training, found {names}; "
            "check --label-column (or use task.problem=regression)"
        )
    test, validation = parts.get("test"), parts.get("validation")
    if test is None or validation is None:
        held = hold_out(
            len(train.frame),
            None if validation is not None else cfg.validation_size,
            None if test is not None else cfg.test_size,
            seed,
            train.frame["label"] if stratify else None,
            train.source,
            "row(s)",
        )
        if test is None:
            test = _held(train, held.test, True)
        if validation is None:
            validation = _held(train, held.validation, True)
        train = _held(train, held.train, False)

    labels: list[str] = []
    if problem != "regression":
        seen = set(_label_counts(train.frame, problem))
        for part in (validation, test):
            _check_unseen(part, seen, problem)
        labels = sorted(seen)

    train = _subsample(train, cfg.max_train_samples, seed, stratify)
    validation = _subsample(validation, cfg.max_eval_samples, seed, stratify)
    test = _subsample(test, cfg.max_eval_samples, seed, stratify)
    _warn(train.frame, test.frame, problem)
    return DatasetSplits(
        train=train.frame.drop(columns=_ROW),
        validation=validation.frame.drop(columns=_ROW),
        test=test.frame.drop(columns=_ROW),
        labels=labels,
        source=source,
    )


def read_labelled(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    problem: str = "single_label",
    separator: str = "|",
) -> pd.DataFrame:
    """Reads and validates one labelled file (for ``transferkit evaluate``): columns ``text`` and ``label``.

    Raises:
        DataError: for an unreadable file, a missing column, an empty text or a bad label.
    """
    part = _prepare(read_table(path), str(path), text_column, label_column, problem, separator)
    return part.frame[["text", "label"]].reset_index(drop=True)
