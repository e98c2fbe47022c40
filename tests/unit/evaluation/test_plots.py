"""PNG plots and the atomic writers they rely on (transferkit.utils.io)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from transferkit.evaluation import classification_metrics, save_confusion_matrix, save_training_curves
from transferkit.utils.io import atomic_save_via, atomic_write_json, atomic_write_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_bytes: int = 5_000) -> None:
    """A real, non-trivial PNG, and nothing else (no temp files) in its folder."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def history(num_epochs: int = 4) -> list[dict]:
    return [
        {
            "epoch": float(epoch),
            "train_loss": 1.0 / epoch,
            "validation": {"accuracy": 0.5 + epoch / 10, "f1_macro": 0.4 + epoch / 10, "loss": 1.2 / epoch},
        }
        for epoch in range(1, num_epochs + 1)
    ]


# --- confusion matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
    metrics = classification_metrics([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], ["cat", "dog", "bird", "never seen"])
    out = save_confusion_matrix(
        metrics["confusion_matrix"], tmp_path / "plots" / "cm.png", normalize=normalize
    )
    assert out == tmp_path / "plots" / "cm.png"
    assert_png(out)


def test_confusion_matrix_many_classes(tmp_path):
    names = [f"class_{i}" for i in range(40)]  # too many to annotate cells; still renders
    cm = {"labels": names, "matrix": [[int(i == j) * 3 for j in range(40)] for i in range(40)]}
    assert_png(save_confusion_matrix(cm, tmp_path / "cm.png", title="40 classes"))


def test_confusion_matrix_overwrites_atomically(tmp_path):
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    save_confusion_matrix({"labels": ["a", "b"], "matrix": [[1, 0], [2, 3]]}, str(path))
    assert_png(path)


@pytest.mark.parametrize(
    "cm",
    [{"labels": ["a", "b"], "matrix": [[1, 0, 0], [0, 1, 0]]}, {"labels": [], "matrix": []}],
)
def test_confusion_matrix_rejects_bad_shape(tmp_path, cm):
    with pytest.raises(ValueError, match="confusion matrix"):
        save_confusion_matrix(cm, tmp_path / "cm.png")
    assert list(tmp_path.iterdir()) == []


# --- training curves -----------------------------------------------------------------------------


def test_training_curves_png(tmp_path):
    assert_png(save_training_curves(history(), tmp_path / "curves.png"))


def test_training_curves_tolerate_gaps_and_regression(tmp_path):
    records = [
        {"epoch": 0.5, "train_loss": 2.0},  # a mid-epoch record without validation
        {
            "epoch": 1.0,
            "train_loss": 1.5,
            "validation": {"rmse": 3.0, "mae": 2.0, "r2": 0.1, "num_examples": 9},
        },
        {"train_loss": 1.0, "validation": {"rmse": 2.0, "mae": 1.5, "r2": 0.4, "per_class": {}}},  # no epoch
    ]
    assert_png(save_training_curves(records, tmp_path / "curves.png"))


def test_training_curves_empty_history(tmp_path):
    assert_png(save_training_curves([], tmp_path / "curves.png"), min_bytes=1_000)


# --- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_json_roundtrip_and_format(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    obj = {"z": 1, "a": [0.5, "é"]}
    assert atomic_write_json(path, obj) == path
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == obj
    assert text.startswith('{\n  "z": 1')  # indent=2, insertion order kept
    assert os.listdir(path.parent) == ["metrics.json"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_atomic_write_json_refuses_nan_and_keeps_old_file(tmp_path, bad):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"accuracy": 0.5})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"accuracy": bad})
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_write_text_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "notes.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_atomic_save_via_passes_temp_path_in_same_folder_with_suffix(tmp_path):
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"weights")

    path = tmp_path / "model.safetensors"
    assert atomic_save_via(path, writer) == path
    assert path.read_bytes() == b"weights"
    assert seen[0].parent == tmp_path and seen[0].suffix == ".safetensors" and seen[0] != path
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_failing_writer_leaves_old_file_intact(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"old weights")

    def broken_writer(tmp: Path) -> None:
        tmp.write_bytes(b"half wri")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save_via(path, broken_writer)
    assert path.read_bytes() == b"old weights"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_failing_writer_creates_nothing(tmp_path):
    def broken_writer(tmp: Path) -> None:
        raise OSError("nope")

    with pytest.raises(OSError, match="nope"):
        atomic_save_via(tmp_path / "new.bin", broken_writer)
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_get_normal_permissions(tmp_path):
    """Temp files are created 0o600; the final file must get what a plain open() would give."""
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    expected = stat.S_IMODE(reference.stat().st_mode)
    written = [
        atomic_write_text(tmp_path / "a.txt", "x"),
        atomic_write_json(tmp_path / "b.json", {}),
        atomic_save_via(tmp_path / "c.bin", lambda tmp: tmp.write_bytes(b"x")),
    ]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == expected


def test_atomic_overwrite_keeps_existing_permissions(tmp_path):
    path = tmp_path / "shared.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
