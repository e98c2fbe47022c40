"""A run or export folder never makes transferkit read outside it: symlinks out and names with ``..`` are
refused in one line before anything is loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import transferkit
from transferkit.errors import RunError


@pytest.fixture
def run_copy(tiny_run, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, target)
    return target


def test_a_model_file_linked_out_of_the_run_folder_is_refused(run_copy: Path, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps({"not": "yours"}))
    (run_copy / "model" / "config.json").unlink()
    (run_copy / "model" / "config.json").symlink_to(secret)
    with pytest.raises(RunError, match=r"model/config\.json links outside the run folder"):
        transferkit.load(run_copy)


def test_a_linked_model_folder_is_refused(run_copy: Path, tmp_path: Path) -> None:
    moved = tmp_path / "model-elsewhere"
    shutil.move(run_copy / "model", moved)
    (run_copy / "model").symlink_to(moved, target_is_directory=True)
    with pytest.raises(RunError, match="links outside the run folder"):
        transferkit.load(run_copy)


def test_links_inside_the_folder_are_fine(run_copy: Path) -> None:
    (run_copy / "model" / "config.json").rename(run_copy / "model" / "config-real.json")
    (run_copy / "model" / "config.json").symlink_to("config-real.json")
    assert transferkit.load(run_copy).predict(["great"])[0]["label"] in ("pos", "neg")


def test_an_export_naming_a_model_file_outside_it_is_refused(tiny_run, tmp_path: Path) -> None:
    from transferkit.compression.export import export_run

    folder = export_run(tiny_run.run_dir, tmp_path / "onnx")
    info = json.loads((folder / "export.json").read_text())
    for name in ("../elsewhere.onnx", "/etc/hostname", ""):
        (folder / "export.json").write_text(json.dumps({**info, "model_file": name}))
        with pytest.raises(RunError, match="names a model_file outside the folder"):
            transferkit.load(folder)
