"""Multi-label and regression runs end to end on a tiny model: targets, metrics, predictions, saved model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

import transferkit

FAST = ["training.progress=false", "training.learning_rate=3e-3", "training.batch_size=16"]


@pytest.fixture(scope="module")
def two_label_csv(tmp_path_factory) -> Path:
    rng = random.Random(3)
    rows = []
    for i in range(160):
        warm, cheap = rng.random() < 0.5, rng.random() < 0.5
        text = f"{'sunny' if warm else 'grey'} day, {'cheap' if cheap else 'pricey'} tickets, note {i}"
        labels = [name for name, on in (("weather", warm), ("price", cheap)) if on] or ["none"]
        rows.append(
            {
                "text": text,
                "label": "|".join(labels),
                "score": (2.0 if warm else -2.0) + (1.0 if cheap else 0.0),
            }
        )
    path = tmp_path_factory.mktemp("problems") / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_multi_label_run(two_label_csv: Path, tmp_path: Path) -> None:
    run = transferkit.fit(
        train=str(two_label_csv),
        backbone="tiny-bert",
        epochs=8,
        output=str(tmp_path / "ml"),
        overrides=["task.problem=multi_label", *FAST],
    )
    test = run.metrics["test"]
    assert {"accuracy", "hamming_loss", "f1_macro", "f1_micro", "per_class"} <= set(test)
    assert set(test["per_class"]) == {"none", "price", "weather"}
    assert (
        json.loads((run.run_dir / "model" / "config.json").read_text())["problem_type"]
        == "multi_label_classification"
    )
    pred = transferkit.load(run.run_dir).predict(["sunny day, cheap tickets"])[0]
    assert set(pred["scores"]) == {"none", "price", "weather"}
    assert all(0.0 <= p <= 1.0 for p in pred["scores"].values())
    assert pred["labels"] == sorted(n for n, p in pred["scores"].items() if p >= 0.5)
    # the pretrained baseline learns this easily; the fine-tuned model must at least beat predicting nothing
    assert run.metrics["pretrained_baseline"]["test"]["f1_micro"] > 0.5


def test_regression_run(two_label_csv: Path, tmp_path: Path) -> None:
    run = transferkit.fit(
        train=str(two_label_csv),
        backbone="tiny-bert",
        epochs=8,
        output=str(tmp_path / "rg"),
        overrides=["task.problem=regression", "data.label_column=score", *FAST],
    )
    test = run.metrics["test"]
    assert {"mae", "rmse", "r2"} <= set(test) and "accuracy" not in test
    assert run.metrics["best_validation_metric"]["name"] == "rmse"
    model = transferkit.load(run.run_dir)
    values = [p["value"] for p in model.predict(["sunny day, cheap tickets", "grey day, pricey tickets"])]
    assert all(isinstance(v, float) for v in values)
    # the linear probe on frozen features fits this target well: a sanity check of the regression path
    assert run.metrics["pretrained_baseline"]["test"]["r2"] > 0.5
