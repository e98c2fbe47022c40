"""Checkpoints never run code, survive a power cut, and a damaged newest one is skipped on resume.

* ``state.pt`` is read with ``weights_only=True``: a planted pickle that would run code is refused unrun.
* Every file and folder is fsynced before the rename that publishes it, and the parent folder after it,
  for checkpoints and for every other atomic write (run folders, exports, compress outputs).
* ``COMPLETE.json`` (sizes and sha256, written last) is checked on resume: a newest checkpoint cut short,
  changed or without its marker is skipped with one warning, and the run, continued from the one before,
  ends as the uninterrupted run does.
"""

from __future__ import annotations

import logging
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import transferkit
from transferkit.errors import RunError
from transferkit.training.checkpoint import (
    MARKER,
    STATE_FILE,
    WEIGHTS_FILE,
    checkpoint_problem,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    write_marker,
)
from transferkit.training.resume import newest_checkpoint
from transferkit.utils.io import atomic_save_via, atomic_write_text, move_into_place, publish_folder


class _State:
    def state_dict(self) -> dict:
        return {}


class _RunsCode:
    """Unpickling this runs ``exec``, which writes ``sentinel``: what a malicious ``state.pt`` would do."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (exec, (f"open({str(self.sentinel)!r}, 'w').write('ran')",))


def _save(folder: Path, step: int) -> Path:
    weights = {"w": torch.full((2,), float(step))}
    return save_checkpoint(folder, step, weights, weights, _State(), _State(), {"step": step}, keep=10)


def _plant_code(checkpoint: Path, sentinel: Path) -> None:
    state = {"optimizer": {}, "scheduler": {}, "rng": _RunsCode(sentinel), "loop": {}}
    torch.save(state, checkpoint / STATE_FILE)


# --- state.pt never runs code -------------------------------------------------------------------------


def test_a_state_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    newest = _save(tmp_path / "checkpoints", 2)
    sentinel = tmp_path / "ran"
    _plant_code(newest, sentinel)
    write_marker(newest, 2)  # even with a forged marker whose checksums match the planted file
    assert checkpoint_problem(newest) is None
    with pytest.raises(RunError, match="state.pt refused"):
        load_checkpoint(newest)
    assert not sentinel.exists()


def test_resume_skips_a_state_that_would_run_code(tmp_path: Path, caplog) -> None:
    folder, sentinel = tmp_path / "checkpoints", tmp_path / "ran"
    _save(folder, 1)
    newest = _save(folder, 2)
    _plant_code(newest, sentinel)
    (newest / MARKER).unlink()  # looks like an earlier version's checkpoint: every file must then load
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        assert newest_checkpoint(folder) == folder / "step-00000001"
    assert not sentinel.exists()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(newest) in warning and "refused" in warning and "\n" not in warning


def test_the_state_is_plain_data_and_rng_states_round_trip(tmp_path: Path) -> None:
    path = _save(tmp_path / "checkpoints", 1)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path / STATE_FILE) == []
    saved = load_checkpoint(path)[2]["rng"]
    set_rng_state(saved)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_an_earlier_versions_checkpoint_without_marker_is_accepted(tmp_path: Path) -> None:
    """Earlier versions stored ``np.random.get_state()`` (an ndarray) and wrote no marker or format."""
    path = _save(tmp_path / "checkpoints", 4)
    (path / MARKER).unlink()
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"optimizer": {}, "scheduler": {}, "rng": old_rng, "loop": {"step": 4}}, path / STATE_FILE)
    assert checkpoint_problem(path) is None
    state = load_checkpoint(path)[2]
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    assert newest_checkpoint(path.parent) == path


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("cut weights", "cut short"),
        ("flip a byte of state.pt", "sha256"),
        ("remove marker", f"{MARKER} missing"),
        ("remove marker, cut weights", "does not load"),
        ("garbage marker", "unreadable"),
    ],
)
def test_checkpoint_problem_names_the_damage(tmp_path: Path, damage: str, problem: str) -> None:
    path = _save(tmp_path / "checkpoints", 1)
    assert checkpoint_problem(path) is None
    _damage(path, damage)
    assert problem in checkpoint_problem(path)


def _damage(path: Path, how: str) -> None:
    if "remove marker" in how:
        (path / MARKER).unlink()
    if "cut weights" in how:
        data = (path / WEIGHTS_FILE).read_bytes()
        (path / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    if "flip a byte" in how:
        data = bytearray((path / STATE_FILE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / STATE_FILE).write_bytes(bytes(data))
    if "garbage marker" in how:
        (path / MARKER).write_text("{not json")


# --- fsync before every rename ------------------------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch):
    """``fsyncs(watch)``: records (inode, is a folder, ``watch`` existed) for each later ``os.fsync``."""
    calls: list[tuple[int, bool, bool]] = []
    real = os.fsync

    def start(watch: Path) -> list[tuple[int, bool, bool]]:
        def fsync(fd: int) -> None:
            st = os.fstat(fd)
            calls.append((st.st_ino, stat.S_ISDIR(st.st_mode), watch.exists()))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        return calls

    return start


def _synced_before(calls, path: Path) -> bool:
    return (path.stat().st_ino, path.is_dir(), False) in calls


def _synced_after(calls, path: Path) -> bool:
    return (path.stat().st_ino, True, True) in calls


def test_a_checkpoint_is_fsynced_before_its_rename_and_its_folder_after(tmp_path: Path, fsyncs) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    calls = fsyncs(folder / "step-00000003")
    final = _save(folder, 3)
    files = sorted(p.name for p in final.iterdir())
    assert files == sorted([WEIGHTS_FILE, "best.safetensors", STATE_FILE, MARKER])
    for path in [*final.iterdir(), final]:  # renaming keeps the inode: these are the .partial's
        assert _synced_before(calls, path), path.name
    assert _synced_after(calls, folder)


def test_published_folders_are_fsynced_whole(tmp_path: Path, fsyncs) -> None:
    final = tmp_path / "run" / "model"
    calls = fsyncs(final)
    with publish_folder(final) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "config.json").write_text("{}")
        (tmp / "sub" / "weights.bin").write_bytes(b"\x00" * 64)
    for path in (final / "config.json", final / "sub" / "weights.bin", final / "sub", final):
        assert _synced_before(calls, path), path
    assert _synced_after(calls, final.parent)


def test_move_into_place_fsyncs_what_it_moves(tmp_path: Path, fsyncs) -> None:
    """``transferkit compress`` stages folders itself and publishes one with :func:`move_into_place`."""
    staged, final = tmp_path / "staged", tmp_path / "out" / "int8"
    staged.mkdir()
    (staged / "model.onnx").write_bytes(b"onnx")
    (final).mkdir(parents=True)  # an earlier output, replaced
    calls = fsyncs(final / "model.onnx")
    move_into_place(staged, final)
    assert _synced_before(calls, final / "model.onnx") and _synced_before(calls, final)
    assert _synced_after(calls, final.parent)


@pytest.mark.parametrize("write", ["text", "via"])
def test_atomic_file_writes_fsync_the_file_and_its_folder(tmp_path: Path, fsyncs, write: str) -> None:
    path = tmp_path / "metrics.json"
    calls = fsyncs(path)
    if write == "text":
        atomic_write_text(path, "{}")
    else:
        atomic_save_via(path, lambda tmp: tmp.write_text("{}"))
    assert _synced_before(calls, path) and _synced_after(calls, tmp_path)


# --- resume falls back past a damaged newest checkpoint -----------------------------------------------


@pytest.fixture(scope="module")
def whole_run(toy_csv_session: Path, tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted run keeping every checkpoint (120 rows, batches of 8: 12 steps an epoch, 24 in all)."""
    return transferkit.fit(
        train=str(toy_csv_session),
        backbone="tiny-bert",
        strategy="full",
        epochs=2,
        output=str(tmp_path_factory.mktemp("durable") / "whole"),
        overrides=[
            "training.batch_size=8",
            "training.learning_rate=1e-3",
            "training.checkpoint_every_steps=3",
            "training.keep_checkpoints=100",
            "training.progress=false",
            "evaluation.pretrained_baseline=false",
            "output.tensorboard=false",
        ],
    )


@pytest.mark.parametrize("damage", ["cut weights", "remove marker", "flip a byte of state.pt"])
def test_resume_falls_back_past_a_damaged_newest_checkpoint(
    whole_run, interrupted_copy, tmp_path: Path, caplog, damage: str
) -> None:
    steps = sorted(int(p.name.split("-")[1]) for p in (whole_run.run_dir / "checkpoints").iterdir())
    newest, before = steps[-3], steps[-4]  # killed just after `newest`, in the second epoch
    cut = interrupted_copy(whole_run.run_dir, tmp_path / "cut", newest)
    damaged = cut / "checkpoints" / f"step-{newest:08d}"
    _damage(damaged, damage)
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        resumed = transferkit.fit(resume=cut)
    skipped = [r.getMessage() for r in caplog.records if "skipping checkpoint" in r.getMessage()]
    assert len(skipped) == 1 and str(damaged) in skipped[0] and "\n" not in skipped[0], skipped
    whole = whole_run.metrics
    assert resumed.metrics["training"]["resumed_from_step"] == before
    assert resumed.metrics["training"]["steps"] == whole["training"]["steps"]
    assert resumed.metrics["best_validation_metric"] == whole["best_validation_metric"]
    for split in ("validation", "test"):
        for key, value in whole[split].items():
            if isinstance(value, int | float):
                assert resumed.metrics[split][key] == pytest.approx(value, abs=1e-6, rel=0), f"{split}.{key}"
    wa, wb = (
        load_file(whole_run.run_dir / "model" / "model.safetensors"),
        load_file(cut / "model" / "model.safetensors"),
    )
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6, rtol=0) for k in wa)
