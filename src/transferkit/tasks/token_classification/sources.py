"""From configured sources to validated train / validation / test sentences (token classification).

Sources are the catalog (``data.dataset``, e.g. conll2003), files (``data.train`` / ``validation`` /
``test``: CoNLL or JSONL) or pandas DataFrames with list columns (Python API). Missing validation / test
sets are split from train by :func:`transferkit.data.split.hold_out`, the split every task shares (a plain
seeded shuffle: ``data.validation_size`` / ``data.test_size`` are fractions of the whole training file), and
``data.max_train_samples`` / ``max_eval_samples`` subsample by :func:`transferkit.data.split.subsample`. Tags are checked
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
from transferkit.data.split import hold_out, subsample
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


def _rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    return frame.iloc[positions].reset_index(drop=True)


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
    d = cfg.data
    missing = {name: getattr(d, f"{name}_size") for name in ("validation", "test") if name not in parts}
    if missing:  # a plain seeded shuffle: sentences have no single label to stratify by
        train = parts["train"]
        held = hold_out(
            len(train), missing.get("validation"), missing.get("test"), seed, None, source, "sentence(s)"
        )
        for name in ("train", *missing):
            parts[name] = _rows(train, getattr(held, name))
    types = entity_types(parts["train"]["tags"])
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
    limits = {"train": d.max_train_samples, "validation": d.max_eval_samples, "test": d.max_eval_samples}
    out = {name: _rows(parts[name], subsample(len(parts[name]), limits[name], seed)) for name in SPLITS}
    return TokenSplits(**out, labels=label_set(types, target), scheme=target, source=source)
