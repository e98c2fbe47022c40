"""Export and int8 on the real MiniLM-L6 (a small rotten_tomatoes run): ONNX matches PyTorch, int8 keeps accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory) -> Path:
    """``head`` on the frozen MiniLM (features computed once): a real backbone in well under a minute."""
    import transferkit

    out = tmp_path_factory.mktemp("runs") / "rt-minilm-head"
    transferkit.fit(
        dataset="rotten_tomatoes", backbone="minilm-l6", strategy="head", epochs=5, output=str(out),
        overrides=["data.max_train_samples=300", "data.max_eval_samples=300", "training.progress=false",
                   "evaluation.pretrained_baseline=false"],
    )  # fmt: skip
    return out


def test_export_matches_pytorch_and_int8_keeps_accuracy(minilm_run: Path, tmp_path: Path) -> None:
    import transferkit
    from transferkit.compression import compress_run, export_run

    exported = export_run(minilm_run, tmp_path / "onnx")
    assert json.loads((exported / "export.json").read_text())["max_abs_diff"] < 1e-4
    from transferkit.compression.report import load_run_splits

    texts = load_run_splits(minilm_run).test["text"].tolist()[:64]
    ref = transferkit.load(minilm_run).predict_proba(texts)
    np.testing.assert_allclose(transferkit.load(exported).predict_proba(texts), ref, atol=1e-4)

    res = compress_run(minilm_run, int8=True, output=tmp_path / "int8", repeats=1)
    torch_row, onnx_row, int8_row = res.rows
    assert onnx_row["accuracy"] == pytest.approx(torch_row["accuracy"], abs=1e-9)
    assert int8_row["accuracy"] >= torch_row["accuracy"] - 0.01  # at most 1 point lost (300 test snippets)
    assert int8_row["size_mb"] <= 0.30 * onnx_row["size_mb"]
    assert transferkit.load(res.folder).predict(texts[:2])[0]["label"] in ("fresh", "rotten")
