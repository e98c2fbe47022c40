"""Image classification's classical baseline for ``transferkit compare``: raw pixels (32x32 RGB, scaled to
[0, 1]) + logistic regression, trained from scratch on the cell's labelled images."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from transferkit.evaluation.baselines import logistic_regression

SIDE = 32


def _pixels(ref: str) -> np.ndarray:

    # PIL load on first use, not when baselines is imported
    from PIL import Image

    source = io.BytesIO(base64.b64decode(ref.split(",", 1)[1])) if ref.startswith("data:") else ref
    with Image.open(source) as im:
        return np.asarray(im.convert("RGB").resize((SIDE, SIDE)), dtype=np.float32).ravel() / 255


def pixels_logistic(frames: dict[str, pd.DataFrame]) -> dict:
    x = {s: np.stack([_pixels(str(v)) for v in f["text"]]) for s, f in frames.items()}
    y = {s: f["label"].astype(str).to_numpy() for s, f in frames.items()}
    return logistic_regression(x, y)
