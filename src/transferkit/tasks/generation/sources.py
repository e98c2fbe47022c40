"""Where generation examples come from: JSONL files, pandas DataFrames, or a catalog data set turned into
instructions (``generation.prompt_template`` around each text; the label is the completion)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transferkit.config import RunConfig
from transferkit.data.split import hold_out, subsample
from transferkit.errors import DataError
from transferkit.tasks.generation.data import Example, example_from_record, read_examples

SPLITS = ("train", "validation", "test")


def catalog_examples(frame: pd.DataFrame, template: str) -> list[Example]:
    """Instruction pairs from a labelled ``text,label`` frame: ``template.format(text=...)`` -> label.

    The completion gets a leading space when the prompt does not end in whitespace (``"Answer:"`` then
    ``" fresh"``), which is how BPE vocabularies spell a word after a colon.
    """
    if "{text}" not in template:
        raise DataError(f"generation.prompt_template {template!r} must contain {{text}}")
    out = []
    for text, label in zip(frame["text"].astype(str), frame["label"], strict=True):
        prompt = template.format(text=text)
        label = str(label)
        out.append(Example(prompt, label if prompt[-1:].isspace() else " " + label))
    return out


def frame_examples(frame: pd.DataFrame, cfg: RunConfig, source: str) -> list[Example]:
    """Examples from a DataFrame with prompt/completion (or messages) columns; a ``text,label`` frame is
    read like a catalog data set."""
    g = cfg.generation
    if {g.prompt_column, g.completion_column} <= set(frame.columns) or g.messages_column in frame.columns:
        return [
            example_from_record(rec, g, f"{source} row {i}")
            for i, rec in enumerate(frame.to_dict(orient="records"), 1)
        ]
    if {"text", "label"} <= set(frame.columns):
        return catalog_examples(frame, g.prompt_template)
    raise DataError(
        f"{source}: no {g.prompt_column!r}/{g.completion_column!r} or {g.messages_column!r} columns "
        f"(columns: {', '.join(map(str, frame.columns))})"
    )


def _pick(examples: list[Example], positions: np.ndarray) -> list[Example]:
    return [examples[i] for i in positions]


def load_generation_splits(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None = None) -> tuple[dict, str]:
    """Train / validation / test examples and a description of their source.

    Missing validation / test parts are held out from train by :func:`transferkit.data.split.hold_out`, the
    split every task shares (a plain seeded shuffle: ``data.validation_size`` / ``data.test_size`` are
    fractions of the whole training file); ``data.max_train_samples`` / ``max_eval_samples`` subsample by
    :func:`transferkit.data.split.subsample`.
    """
    d = cfg.data
    parts: dict[str, list[Example] | None] = dict.fromkeys(SPLITS)
    if d.dataset:
        from transferkit.data.catalog import load_catalog_dataset

        catalog = load_catalog_dataset(d.dataset)
        parts = {s: catalog_examples(catalog[s], cfg.generation.prompt_template) for s in SPLITS}
        source = f"catalog data set {d.dataset} as instructions ({cfg.generation.prompt_template!r} -> label)"
    else:
        for s in SPLITS:
            if frames and s in frames:
                parts[s] = frame_examples(frames[s], cfg, f"<DataFrame {s}>")
            elif getattr(d, s) and not str(getattr(d, s)).startswith("<"):
                parts[s] = read_examples(getattr(d, s), cfg.generation)
        if parts["train"] is None:
            raise DataError("no training data: set data.train (a JSONL file) or pass frames={'train': ...}")
        source = ", ".join(f"{s}={getattr(d, s)}" for s in SPLITS if getattr(d, s))
        missing = {s: getattr(d, f"{s}_size") for s in ("validation", "test") if parts[s] is None}
        if missing:
            train = parts["train"]
            held = hold_out(
                len(train), missing.get("validation"), missing.get("test"), d.split_seed, None, source
            )
            for s in ("train", *missing):
                parts[s] = _pick(train, getattr(held, s))
    limits = {"train": d.max_train_samples, "validation": d.max_eval_samples, "test": d.max_eval_samples}
    for s in SPLITS:
        parts[s] = _pick(parts[s], subsample(len(parts[s]), limits[s], d.split_seed))
    return parts, source
