"""Text generation (causal LM): prompt/completion pairs or chats; see :mod:`transferkit.lm`."""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = (
    "Fine-tune a causal LM on prompt/completion pairs or chats (JSONL); perplexity, exact match, ROUGE-L."
)


def fit(cfg, frames, resume: bool = False):
    from transferkit.lm.fit import fit_generation

    return fit_generation(cfg, frames, resume)


def load(run_dir: str | Path, batch_size: int = 16):
    from transferkit.lm.predictor import GenerationPredictor

    return GenerationPredictor(run_dir, batch_size)
