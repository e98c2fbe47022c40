"""Image classification end to end through the real CLI: the shipped EfficientNet-Lite0 on real digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "250"}


def cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit.cli.main", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> dict[str, Path]:
    """A few hundred scikit-learn digits as user files: an image folder (train) and .npz arrays (test)."""
    from PIL import Image

    from transferkit.data import load_catalog_dataset
    from transferkit.data.images import open_image

    frames = load_catalog_dataset("digits")
    root = tmp_path_factory.mktemp("digits")
    train = frames["train"].groupby("label").head(30)  # 300 images, 30 per class
    for i, (ref, label) in enumerate(zip(train["text"], train["label"], strict=True)):
        (root / "train" / label).mkdir(parents=True, exist_ok=True)
        open_image(ref).convert("L").save(root / "train" / label / f"{i}.png")
    test = frames["test"].head(100)
    x = np.stack([np.asarray(open_image(ref).convert("L")) for ref in test["text"]])
    np.savez(root / "test.npz", x=x, y=test["label"].to_numpy().astype(str))
    Image.fromarray(x[0]).save(root / "one.png")
    return {
        "train": root / "train",
        "test": root / "test.npz",
        "one": root / "one.png",
        "label": test["label"].iloc[0],
    }


def test_efficientnet_lite0_learns_digits_and_predicts_from_the_cli(digit_files, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cli(
        "-q", "fit", "--train", str(digit_files["train"]), "--test", str(digit_files["test"]),
        "--task", "image-classification", "--backbone", "efficientnet-lite0", "--strategy", "head",
        "--epochs", "15", "--output", str(run_dir), "image.image_size=64", "training.progress=false",
        "evaluation.pretrained_baseline=false", "training.head_learning_rate=3e-3",
    )  # fmt: skip
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backbone"] == "efficientnet-lite0"
    assert metrics["test"]["num_examples"] == 100
    assert metrics["test"]["accuracy"] >= 0.6, metrics["test"]  # chance is 0.1
    out = cli("-q", "predict", str(run_dir), "--image", str(digit_files["one"])).stdout
    pred = json.loads(out.splitlines()[0])
    assert set(pred["scores"]) == {str(d) for d in range(10)}
    evaluated = cli("-q", "evaluate", str(run_dir), "--data", str(digit_files["test"]), "--output", str(tmp_path / "m.json"))  # fmt: skip
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"]), evaluated.stdout
