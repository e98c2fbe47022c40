"""End to end through the real CLI, on the shipped MiniLM backbone and real rotten_tomatoes snippets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit.cli.main", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1200,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def real_files(tmp_path_factory) -> dict[str, Path]:
    """A few hundred real snippets written as user CSV files (the quick path reads them like any CSV)."""
    from transferkit.data import load_catalog_dataset

    data = load_catalog_dataset("rotten_tomatoes")
    folder = tmp_path_factory.mktemp("rt")
    files = {}
    for split, n in (("train", 400), ("validation", 100), ("test", 300)):
        path = folder / f"{split}.csv"
        data[split].sample(n=n, random_state=0).to_csv(path, index=False)
        files[split] = path
    return files


@pytest.fixture(scope="module")
def full_run(real_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "rt-full"
    cli(
        "fit", "--train", str(real_files["train"]), "--validation", str(real_files["validation"]), "--test", str(real_files["test"]),
        "--backbone", "minilm-l6", "--strategy", "full", "--epochs", "2", "--output", str(out),
        "training.progress=false", "training.batch_size=16",
    )  # fmt: skip
    return out


def test_full_fine_tuning_beats_chance_and_records_baseline(full_run: Path) -> None:
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.68  # chance is ~0.58 (majority class)
    assert metrics["test"]["num_examples"] == 300
    assert metrics["pretrained_baseline"]["test"]["accuracy"] > 0.6
    assert metrics["trainable_parameters"] == metrics["total_parameters"] > 22_000_000
    assert (full_run / "model" / "model.safetensors").is_file()
    assert "full" in (full_run / "README.md").read_text()


def test_predict_evaluate_and_plain_transformers_agree(full_run: Path, real_files, tmp_path: Path) -> None:
    texts = ["A warm, funny and beautifully acted film.", "A tedious, joyless mess."]
    out = cli("predict", str(full_run), "--text", texts[0], "--text", texts[1]).stdout.strip().splitlines()
    preds = [json.loads(line) for line in out]
    assert [p["label"] for p in preds] == ["fresh", "rotten"]

    code = (
        "import json, sys\n"
        "from transformers import pipeline\n"
        f"clf = pipeline('text-classification', model={str(full_run / 'model')!r}, trust_remote_code=True)\n"
        f"print(json.dumps(clf({texts!r}, top_k=None)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    for ours, theirs in zip(preds, plain, strict=True):
        scores = {d["label"]: d["score"] for d in theirs}
        for label, p in ours["scores"].items():
            assert abs(scores[label] - p) < 1e-5

    scored = tmp_path / "scored.csv"
    cli("predict", str(full_run), "--input", str(real_files["test"]), "--output", str(scored))
    import pandas as pd

    frame = pd.read_csv(scored)
    assert {"label", "predicted_label", "score", "p_fresh", "p_rotten"} <= set(frame.columns)
    accuracy = (frame["predicted_label"] == frame["label"]).mean()
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert (
        abs(accuracy - metrics["test"]["accuracy"]) < 1e-9
    )  # predict-file uses the same model as the test score

    report = tmp_path / "eval.json"
    cli("evaluate", str(full_run), "--data", str(real_files["test"]), "--output", str(report))
    assert abs(json.loads(report.read_text())["accuracy"] - metrics["test"]["accuracy"]) < 1e-9


def test_head_strategy_on_cached_features(real_files, tmp_path: Path) -> None:
    out = tmp_path / "rt-head"
    cli(
        "fit", "--train", str(real_files["train"]), "--test", str(real_files["test"]), "--backbone", "minilm-l6",
        "--strategy", "head", "--epochs", "20", "--output", str(out), "training.progress=false",
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.65
    assert metrics["trainable_parameters"] == 384 * 2 + 2


def test_user_mistakes_are_one_line_errors(real_files, tmp_path: Path) -> None:
    proc = cli(
        "fit",
        "--train",
        str(real_files["train"]),
        "--label-column",
        "stars",
        "--output",
        str(tmp_path / "x"),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "stars" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
