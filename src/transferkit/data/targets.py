"""Labels -> the targets a head is trained and scored on, for every task that classifies whole examples."""

from __future__ import annotations

import numpy as np
import pandas as pd


def encode_targets(frame: pd.DataFrame, problem: str, labels: list[str]) -> np.ndarray:
    """Targets in head order: class ids, multi-hot rows or floats."""
    if problem == "regression":
        return np.array(frame["label"].astype(np.float32).to_numpy())
    index = {name: i for i, name in enumerate(labels)}
    if problem == "multi_label":
        out = np.zeros((len(frame), len(labels)), dtype=np.float32)
        for row, names in enumerate(frame["label"]):
            out[row, [index[n] for n in names]] = 1.0
        return out
    return np.array(frame["label"].map(index).to_numpy(dtype=np.int64))
