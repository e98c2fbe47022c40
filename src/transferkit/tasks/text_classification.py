"""Text classification (single-label, multi-label, regression): the core task."""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = "Label whole texts: single-label, multi-label or regression (CSV/TSV/JSONL/Parquet text,label)."


def fit(cfg, frames, resume: bool = False):
    from transferkit.api import fit_text_classification

    return fit_text_classification(cfg, frames, resume)


def load(run_dir: str | Path, batch_size: int = 64):
    from transferkit.predictor import Predictor

    return Predictor(run_dir, batch_size)
