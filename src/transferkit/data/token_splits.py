"""From configured sources to validated train / validation / test sentences (token classification).

Sources are the catalog (``data.dataset``, e.g. conll2003), files (``data.train`` / ``validation`` /
``test``: CoNLL or JSONL) or pandas DataFrames with list columns (Python API). Missing validation / test
sets are split from train (seeded shuffle, ``data.validation_size`` / ``data.test_size``). Tags are checked
under ``tokens.scheme`` and converted to ``tokens.target_scheme``; the label set holds every tag of the
target scheme for each entity type seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from transferkit.config import RunConfig
from transferkit.data.catalog import DATASETS, load_catalog_dataset
from transferkit.data.conll import WHERE, convert, entity_types, frame_to_sentences, label_set, read_sentences
from transferkit.errors import DataError

SPLITS = ("train", "validation", "test")
DATAFRAME = "<DataFrame>"


@dataclass
class TokenSplits:
    """Validated sentences of one run: frames with columns ``tokens`` and ``tags`` (target scheme)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]
    scheme: str
    source: str


def _read(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None) -> tuple[dict, str, str]:
    tk, data = cfg.tokens, cfg.data
    if data.dataset:
        entry = DATASETS.entry(data.dataset)
        if entry.extra.get("task") != "token-classification":
            raise DataError(
                f"data set {data.dataset!r} is for {entry.extra.get('task')}, not token classification; pick another --dataset"
            )
        raw = load_catalog_dataset(data.dataset)
        parts = {s: frame_to_sentences(raw[s], f"{data.dataset} ({s})") for s in SPLITS}
        return parts, entry.extra.get("scheme", "iob2"), f"{data.dataset} (catalog)"
    parts = {}
    if data.train == DATAFRAME or (frames and "train" in frames):
        if not frames or "train" not in frames:
            raise DataError("this run was trained from pandas DataFrames: pass frames={'train': ...}")
        for s in SPLITS:
            if s in frames:
                parts[s] = frame_to_sentences(frames[s], f"<DataFrame {s}>", tk.tokens_column, tk.tags_column)
        return parts, tk.scheme, "DataFrames"
    for s in SPLITS:
        path = getattr(data, s)
        if path:
            parts[s] = read_sentences(path, tk.file_format, tk.tag_column, tk.tokens_column, tk.tags_column)
    return parts, tk.scheme, str(data.train)


def _take(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or n >= len(frame):
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def _split(frame: pd.DataFrame, fraction: float, seed: int, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = int(round(len(frame) * fraction))
    if n < 1 or n >= len(frame):
        raise DataError(
            f"{len(frame)} training sentences are too few to split off a {what} set; give --{what} or more data"
        )
    order = np.random.default_rng(seed).permutation(len(frame))
    held = np.sort(order[:n])
    rest = np.sort(order[n:])
    return frame.iloc[rest].reset_index(drop=True), frame.iloc[held].reset_index(drop=True)


def load_token_splits(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None = None) -> TokenSplits:
    """Reads, checks, converts, splits and subsamples the sentences of a run.

    Raises:
        DataError: for an unreadable file, a malformed tag sequence (file, line or row, word), an entity type
            in validation / test never seen in training, or training data without entities.
    """
    parts, scheme, source = _read(cfg, frames)
    target, seed = cfg.tokens.target_scheme, cfg.data.split_seed
    for name, frame in parts.items():
        frame["tags"] = [
            convert(list(t), scheme, target, w) for t, w in zip(frame["tags"], frame[WHERE], strict=True)
        ]
        parts[name] = frame
    train = parts["train"]
    n_train = len(train)
    if "test" not in parts:
        train, parts["test"] = _split(train, cfg.data.test_size, seed, "test")
    if "validation" not in parts:
        train, parts["validation"] = _split(
            train, cfg.data.validation_size * n_train / len(train), seed + 1, "validation"
        )
    types = entity_types(train["tags"])
    if not types:
        raise DataError(
            f"{source}: no entities in the training sentences (every tag is O); check tokens.tag_column"
        )
    for name in ("validation", "test"):
        for tags, where in zip(parts[name]["tags"], parts[name][WHERE], strict=True):
            unseen = entity_types([tags]) - types
            if unseen:
                raise DataError(
                    f"{where}: entity type(s) {', '.join(sorted(unseen))} never seen in training (it has {', '.join(sorted(types))})"
                )
    out = {
        "train": _take(train, cfg.data.max_train_samples, seed),
        "validation": _take(parts["validation"], cfg.data.max_eval_samples, seed),
        "test": _take(parts["test"], cfg.data.max_eval_samples, seed),
    }
    return TokenSplits(**out, labels=label_set(types, target), scheme=target, source=source)
