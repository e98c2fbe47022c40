"""ONNX export: the exported folder loads through ``transferkit.load`` and predicts like PyTorch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.cli.main import main
from transferkit.compression import export_run
from transferkit.errors import RunError
from transferkit.tasks.text_classification.onnx import OnnxTextClassifier

TEXTS = [
    "great",
    "the movie was really wonderful and the plot of the story was excellent, superb acting",
    "awful boring dreadful",
    "",
    "it " * 300,  # longer than max_length: truncated the same way
]


def test_exported_folder_layout(exported: Path, tiny_run) -> None:
    meta = json.loads((exported / "export.json").read_text())
    assert meta["format"] == "onnx" and meta["precision"] == "fp32" and meta["task"] == "text-classification"
    assert meta["inputs"][:2] == ["input_ids", "attention_mask"]
    assert meta["max_abs_diff"] < 1e-4
    for name in ("model.onnx", "labels.json", "metrics.json", "config.yaml", "tokenizer/tokenizer.json"):
        assert (exported / name).is_file(), name
    assert json.loads((exported / "labels.json").read_text()) == json.loads(
        (tiny_run.run_dir / "labels.json").read_text()
    )
    assert not list(exported.parent.glob(".*partial"))  # the staging folder was renamed, nothing left over


def test_onnx_predictions_match_pytorch(exported: Path, tiny_run) -> None:
    torch_model, onnx_model = transferkit.load(tiny_run.run_dir), transferkit.load(exported)
    assert isinstance(onnx_model, OnnxTextClassifier)
    assert onnx_model.labels == torch_model.labels and onnx_model.task == torch_model.task
    assert onnx_model.metrics == torch_model.metrics
    # batch sizes 5 and 1 and padded lengths differ from the export's example: dynamic axes at work
    np.testing.assert_allclose(onnx_model.predict_proba(TEXTS), torch_model.predict_proba(TEXTS), atol=1e-5)
    np.testing.assert_allclose(
        onnx_model.predict_proba(TEXTS[1:2]), torch_model.predict_proba(TEXTS[1:2]), atol=1e-5
    )
    ours, ref = onnx_model.predict(TEXTS), torch_model.predict(TEXTS)
    assert [p["label"] for p in ours] == [p["label"] for p in ref]
    assert ours[0].keys() == ref[0].keys() == {"label", "score", "scores"}
    assert onnx_model.predict("great")[0]["label"] == ref[0]["label"]
    assert onnx_model.predict([]) == []


def test_onnx_evaluate_and_predict_file(exported: Path, tiny_run, toy_csv: Path, tmp_path: Path) -> None:
    ours = transferkit.load(exported).evaluate(toy_csv)
    ref = transferkit.load(tiny_run.run_dir).evaluate(toy_csv)
    assert ours["accuracy"] == ref["accuracy"] and ours["loss"] == pytest.approx(ref["loss"], abs=1e-5)
    out = transferkit.load(exported).predict_file(toy_csv, tmp_path / "scored.csv")
    import pandas as pd

    scored = pd.read_csv(out)
    assert len(scored) == 120 and {"predicted_label", "score", "p_pos", "p_neg"} <= set(scored.columns)


def test_cli_export_then_predict(tiny_run, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli-onnx"
    assert main(["export", str(tiny_run.run_dir), "--format", "onnx", "--output", str(out)]) == 0
    assert "max |onnx - torch|" in capsys.readouterr().out
    assert main(["predict", str(out), "--text", "wonderful film", "--text", "awful"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ref = transferkit.load(tiny_run.run_dir).predict(["wonderful film", "awful"])
    assert [p["label"] for p in lines] == [p["label"] for p in ref]
    assert lines[0]["scores"]["pos"] == pytest.approx(ref[0]["scores"]["pos"], abs=1e-5)


def test_default_output_name_never_overwrites(tiny_run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (tmp_path / "run-onnx").mkdir()
    (tmp_path / "run-onnx" / "mine.txt").write_text("user file")
    folder = export_run(run)
    assert folder == tmp_path / "run-onnx-2"
    assert (tmp_path / "run-onnx" / "mine.txt").read_text() == "user file"


def test_errors_are_one_clear_line(tiny_run, exported: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(RunError, match="already exists"):
        export_run(tiny_run.run_dir, exported)
    with pytest.raises(RunError, match="no such run folder"):
        export_run(tmp_path / "nowhere")
    with pytest.raises(RunError, match="already an ONNX export"):
        export_run(exported, tmp_path / "again")
    assert main(["export", str(tiny_run.run_dir), "--output", str(exported)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already exists" in err and "\n" not in err


def test_unsupported_task_is_refused(tiny_run, tmp_path: Path) -> None:
    run = tmp_path / "lm-run"
    shutil.copytree(tiny_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    info = json.loads((run / "labels.json").read_text())
    (run / "labels.json").write_text(json.dumps({**info, "task": "generation"}))
    with pytest.raises(RunError, match="'generation' has no ONNX export yet"):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_broken_export_is_reported(exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(RunError, match="model.onnx is missing"):
        transferkit.load(broken)


def test_staging_folders_left_by_killed_processes_are_removed(tmp_path):
    import os

    from transferkit.compression.export import staging_dir

    out = tmp_path / "exported"
    dead = tmp_path / ".exported.999999999.abc.partial"  # no such process
    live = tmp_path / f".exported.{os.getpid()}.def.partial"  # this one still runs
    other = tmp_path / ".other.999999999.xyz.partial"  # another output's
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "model.onnx").write_text("half written")
    fresh = staging_dir(out)
    assert fresh.is_dir() and fresh.name.startswith(f".exported.{os.getpid()}.")
    assert not dead.exists() and live.exists() and other.exists()
