"""``compress``: int8, pruning and distillation folders load, predict, and the report measures them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.cli.main import main
from transferkit.compression import compress_run
from transferkit.compression.distil import soft_targets
from transferkit.compression.prune import apply_pruning, make_permanent, prunable_layers, sparsity
from transferkit.errors import ConfigError, RunError

TEXTS = ["great wonderful film", "awful boring plot", "the scene was really excellent"]


def test_int8_folder_loads_predicts_and_is_smaller(int8_result, exported: Path) -> None:
    folder = int8_result.folder
    model = transferkit.load(folder)
    assert (
        model.precision == "int8" and json.loads((folder / "export.json").read_text())["precision"] == "int8"
    )
    assert (folder / "model.onnx").stat().st_size < 0.35 * (exported / "model.onnx").stat().st_size
    fp32 = transferkit.load(exported)
    np.testing.assert_allclose(model.predict_proba(TEXTS), fp32.predict_proba(TEXTS), atol=0.05)
    assert model.predict(TEXTS)[0].keys() == {"label", "score", "scores"}


def test_int8_report(int8_result, tiny_run) -> None:
    rows = int8_result.rows
    assert [r["stage"] for r in rows] == [
        "original (PyTorch fp32)",
        "ONNX fp32 (onnxruntime)",
        "ONNX int8 (onnxruntime)",
    ]
    report = json.loads((int8_result.folder / "report.json").read_text())
    assert report["rows"] == json.loads(json.dumps(rows))
    assert report["num_examples"] == tiny_run.metrics["test"]["num_examples"]
    assert (
        rows[0]["accuracy"] == tiny_run.metrics["test"]["accuracy"]
    )  # same test split, reloaded from config
    assert rows[1]["accuracy"] == rows[0]["accuracy"]  # fp32 ONNX predicts like PyTorch
    for row in rows:
        assert row["latency_ms_batch1"] > 0 and row["latency_ms_batch32"] > 0 and row["size_mb"] > 0
    assert rows[2]["size_mb"] < rows[1]["size_mb"] * 0.35
    assert "ONNX int8" in int8_result.table and "speed-up" in int8_result.table
    metrics = json.loads((int8_result.folder / "metrics.json").read_text())
    assert metrics["compression"]["after"] == rows[2]["metrics"]


def test_prune_reaches_sparsity_and_predicts(tiny_run, tmp_path: Path) -> None:
    res = compress_run(tiny_run.run_dir, prune=0.3, recover_epochs=1, output=tmp_path / "pruned", repeats=1)
    model = transferkit.load(res.folder)
    assert type(model).__name__ == "Predictor"  # a plain PyTorch run folder
    assert sparsity(model.model) == pytest.approx(0.3, abs=0.01)
    assert res.rows[-1]["sparsity"] == pytest.approx(0.3, abs=0.01)
    sd = model.model.state_dict()
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in sd)  # permanent: no masks saved
    assert len(model.predict(TEXTS)) == 3
    assert (res.folder / "logs" / "train_log.jsonl").is_file()  # the recovery fine-tune ran


def test_structured_pruning_zeroes_whole_rows() -> None:
    from transformers import BertConfig

    from transferkit.remote_code.modeling_transferkit import (
        TransferkitConfig,
        TransferkitForSequenceClassification,
    )

    bert = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    cfg = TransferkitConfig(backbone=bert.to_dict(), num_labels=2)
    model = TransferkitForSequenceClassification(cfg)
    head_before = model.head.output_layer.weight.clone()
    layers = apply_pruning(model, 0.5, "structured")
    make_permanent(layers)
    for layer in prunable_layers(model):
        zero_rows = (layer.weight.abs().sum(dim=1) == 0).float().mean().item()
        assert zero_rows == pytest.approx(0.5, abs=0.01)
    assert torch.equal(model.head.output_layer.weight, head_before)  # the head stays dense
    with pytest.raises(ValueError, match="prune method"):
        apply_pruning(model, 0.5, "random")


def test_distil_writes_a_smaller_loadable_run(tiny_run, tmp_path: Path) -> None:
    res = compress_run(
        tiny_run.run_dir, distil_to="tiny-bert", student_layers=1, distil_epochs=1, output=tmp_path / "student",
        repeats=1,
    )  # fmt: skip
    model = transferkit.load(res.folder)
    assert model.model.config.backbone["num_hidden_layers"] == 1
    metrics = json.loads((res.folder / "metrics.json").read_text())
    assert metrics["total_parameters"] < tiny_run.metrics["total_parameters"]
    assert metrics["distillation"]["teacher"] == str(tiny_run.run_dir)
    assert [r["stage"] for r in res.rows] == ["original (PyTorch fp32)", "distilled into tiny-bert"]
    assert len(model.predict(TEXTS)) == 3


def test_soft_targets() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    hard = np.array([0, 0])
    mixed = soft_targets(logits, hard, "single_label", temperature=2.0, alpha=0.5)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
    teacher = torch.softmax(logits / 2.0, dim=-1).numpy()
    np.testing.assert_allclose(mixed, 0.5 * teacher + 0.5 * np.eye(2)[hard], rtol=1e-6)
    np.testing.assert_allclose(soft_targets(logits, hard, "single_label", 2.0, 1.0), np.eye(2)[hard])


def test_compress_errors(tiny_run, exported: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="nothing to do"):
        compress_run(tiny_run.run_dir)
    with pytest.raises(ConfigError, match="--prune must be a fraction"):
        compress_run(tiny_run.run_dir, prune=1.5)
    with pytest.raises(RunError, match="an ONNX export"):
        compress_run(exported, int8=True)
    with pytest.raises(RunError, match="no such run folder"):
        compress_run(tmp_path / "nowhere", int8=True)
    (tmp_path / "taken").mkdir()
    assert main(["compress", str(tiny_run.run_dir), "--int8", "--output", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "\n" not in err
    assert not list((tmp_path / "taken").iterdir())
