"""The recipes keep their numbers: a seeded run per task and strategy on tiny random models gives the metrics
recorded in ``tests/fixtures/recipe_metrics.json`` (written by the code before the four fit recipes were
rebuilt on the shared steps of :mod:`transferkit.tasks.recipe`).

To re-record after a change that is meant to move the numbers, run this file with
``TRANSFERKIT_RECORD_RECIPES=1`` and commit the fixture with the reason.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import transferkit

RECORD = Path(__file__).parents[2] / "fixtures" / "recipe_metrics.json"
RUN = ["training.progress=false", "output.tensorboard=false", "training.max_steps=6", "training.evaluations_per_epoch=3",
       "training.learning_rate=1e-3", "training.seed=3"]  # fmt: skip


def _text(folder: Path) -> Path:
    words = (("great", "pos"), ("awful", "neg"), ("fine", "pos"), ("dull", "neg"))
    rows = [(f"the {w} film number {i}", lab) for i in range(10) for w, lab in words]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / "data.csv", index=False)
    return folder / "data.csv"


def _tokens(folder: Path) -> Path:
    rows = [{"tokens": ["Ann", "met", "Bob", "in", "Rome"], "tags": ["B-PER", "O", "B-PER", "O", "B-LOC"]},
            {"tokens": ["Rome", "is", "far", "from", "Oslo"], "tags": ["B-LOC", "O", "O", "O", "B-LOC"]},
            {"tokens": ["Bob", "likes", "Ann"], "tags": ["B-PER", "O", "B-PER"]}] * 10  # fmt: skip
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        label = ("dark", "light")[i % 2]
        pixels = rng.integers(0, 90, (24, 24, 3)) + (150 if label == "light" else 0)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
        rows.append((f"{i}.png", label))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(folder / "data.csv", index=False)
    return folder / "data.csv"


def _pairs(folder: Path) -> Path:
    rows = [{"prompt": f"Q{i}: the capital of Zorbia?", "completion": " Quxville"} for i in range(30)]
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TASKS = {  # task -> (data writer, backbone, settings)
    "text-classification": (_text, "tiny-bert", ()),
    "token-classification": (_tokens, "tiny-bert", ()),
    "image-classification": (_images, "tiny-efficientnet", ("image.image_size=32",)),
    "generation": (_pairs, "tiny-llama", ("generation.eval_samples=3", "generation.max_new_tokens=3")),
}
CASES = [
    ("text-classification", "full"), ("text-classification", "lp-ft"), ("text-classification", "lora"),
    ("text-classification", "linear-probe"), ("text-classification", "top-k"),
    ("token-classification", "full"), ("token-classification", "lp-ft"), ("token-classification", "head"),
    ("image-classification", "full"), ("image-classification", "lp-ft"), ("image-classification", "top-k"),
    ("generation", "full"), ("generation", "lora"),
]  # fmt: skip
MEASURED = ("_per_second", "seconds", "runtime")  # timings: measured, not computed


def _numbers(block: dict, prefix: str = "") -> dict[str, float]:
    """The computed numbers of a metrics block, flattened ("test.accuracy": 0.5, ...)."""
    out: dict[str, float] = {}
    for key, value in block.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_numbers(value, name + "."))
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not any(m in key for m in MEASURED)
        ):
            out[name] = float(value)
    return out


def _recorded(metrics: dict) -> dict[str, float]:
    kept = {k: metrics[k] for k in ("validation", "test", "pretrained_baseline") if k in metrics}
    kept["best"] = {k: v for k, v in metrics["best_validation_metric"].items() if k != "name"}
    kept["steps"] = metrics["training"]["steps"]
    kept["trainable_parameters"] = metrics["trainable_parameters"]
    return _numbers(kept)


def _run(task: str, strategy: str, folder: Path) -> dict[str, float]:
    write, backbone, settings = TASKS[task]
    data = write(folder)
    files = [f"data.{s}={data}" for s in ("train", "validation", "test")]
    run = transferkit.fit(task=task, backbone=backbone, strategy=strategy, output=str(folder / "run"),
                          overrides=[*RUN, *files, *settings])  # fmt: skip
    return _recorded(run.metrics)


def _same(a: float, b: float) -> bool:
    # the fixture was written on one CPU; another's kernels round differently at ~1e-6
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=2e-3, abs_tol=2e-4)


@pytest.mark.parametrize(("task", "strategy"), CASES)
def test_seeded_run_gives_the_recorded_metrics(task: str, strategy: str, tmp_path: Path) -> None:
    got = _run(task, strategy, tmp_path)
    key = f"{task}/{strategy}"
    if os.environ.get("TRANSFERKIT_RECORD_RECIPES"):
        record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        record[key] = got
        RECORD.write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n")
        pytest.skip(f"recorded {key}")
    want = json.loads(RECORD.read_text())[key]
    assert sorted(got) == sorted(want), key
    off = {k: (want[k], got[k]) for k in want if not _same(want[k], got[k])}
    assert not off, f"{key}: {off}"
