"""``transferkit fit --resume`` after a real SIGKILL: the resumed run ends exactly as an uninterrupted one.

Two CLI runs of the same config start together: A runs to the end; B is killed with SIGKILL right after its
checkpoint at step 9, gets a half-written checkpoint folder planted next to its real ones, and is resumed
with ``transferkit fit --resume B``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from transferkit.cli.main import main

# 60 rows -> 48 train -> 6 steps of 8 per epoch, 36 in all: the checkpoint at step 9 is in the middle of the
# second epoch, so the resumed run has to restore the epoch's data order as well as its position in it.
ROWS = 60
STEPS = 36
KILL_AFTER = "step-00000009"
KEEP = 2  # training.keep_checkpoints, the default
CONFIG = [
    "--backbone",
    "tiny-bert",
    "--epochs",
    "6",
    "training.batch_size=8",
    "training.checkpoint_every_steps=3",
]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
_STEP = re.compile(r"^step-(\d+)$")
_POS = ("great", "wonderful", "excellent", "superb")
_NEG = ("awful", "boring", "terrible", "dreadful")
_FILLER = ("the", "a", "movie", "plot", "actor", "scene", "story", "film", "was", "is", "and", "of", "it")


def _resume_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Balanced ``text,label`` rows, label set by one keyword among 1-8 filler words; no text repeats."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < rows:
        label = ("pos", "neg")[len(out) % 2]
        words = [rng.choice(_FILLER) for _ in range(rng.randint(1, 8))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(_POS if label == "pos" else _NEG))
        if " ".join(words) not in seen:
            seen.add(" ".join(words))
            out.append((" ".join(words), label))
    return pd.DataFrame(out, columns=["text", "label"])


def _start(run_dir: Path, train: Path, log: Path) -> subprocess.Popen:
    args = ["fit", "--train", str(train), *CONFIG, "training.progress=false", "--output", str(run_dir)]
    return _popen(args, log)


def _popen(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen(
            [sys.executable, "-m", "transferkit.cli.main", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )


def _finish(proc: subprocess.Popen, log: Path, what: str, timeout: float = 300) -> None:
    proc.wait(timeout=timeout)
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{log.read_text()[-3000:]}"


def _complete_checkpoints(run_dir: Path) -> dict[int, Path]:
    folder = run_dir / "checkpoints"
    return {int(m.group(1)): p for p in folder.iterdir() if (m := _STEP.match(p.name))}


@pytest.fixture(scope="module")
def matrix_killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Runs A (uninterrupted) and B (SIGKILLed after step 9, a junk partial checkpoint added, resumed)."""
    root = tmp_path_factory.mktemp("resume")
    train = root / "toy.csv"
    _resume_frame(ROWS).to_csv(train, index=False)
    a_dir, b_dir = root / "A", root / "B"
    a = _start(a_dir, train, root / "a.log")
    b = _start(b_dir, train, root / "b.log")
    started = [a, b]
    try:
        deadline = time.monotonic() + 300
        while not (b_dir / "checkpoints" / KILL_AFTER).is_dir():
            assert b.poll() is None, (
                f"B ended before its checkpoint at step 9:\n{(root / 'b.log').read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "B wrote no checkpoint at step 9 in 300 s"
            time.sleep(0.01)
        assert b.poll() is None, "B finished before it could be killed"
        os.kill(b.pid, signal.SIGKILL)
        b.wait(timeout=60)
        killed = {
            "returncode": b.returncode,
            "files": sorted(p.name for p in b_dir.iterdir()),
            "checkpoints": sorted(_complete_checkpoints(b_dir)),
        }
        # A write cut short leaves a ``.partial`` folder; this one looks newer than the rest and holds junk.
        partial = b_dir / "checkpoints" / "step-99999999.partial"
        partial.mkdir()
        for name in ("weights.safetensors", "best.safetensors", "state.pt"):
            (partial / name).write_bytes(b"\x00junk, half written" * 10)
        started.append(_popen(["fit", "--resume", str(b_dir)], root / "resume.log"))
        _finish(started[-1], root / "resume.log", "fit --resume B")
        _finish(a, root / "a.log", "uninterrupted run A")
    finally:
        for proc in started:  # only after a failure: stop what this fixture started
            if proc.poll() is None:
                proc.kill()
    return {"A": a_dir, "B": b_dir, "killed": killed}


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_kill_interrupted_training(matrix_killed_and_resumed) -> None:
    killed = matrix_killed_and_resumed["killed"]
    assert killed["returncode"] == -signal.SIGKILL
    assert "metrics.json" not in killed["files"] and "model" not in killed["files"]
    assert 9 <= max(killed["checkpoints"]) < STEPS


def test_resume_continues_from_the_newest_complete_checkpoint(matrix_killed_and_resumed) -> None:
    run = matrix_killed_and_resumed
    training = _metrics(run["B"])["training"]
    # the planted step-99999999.partial was not loaded: resuming from it would have ended at once, or crashed
    assert training["resumed_from_step"] == max(run["killed"]["checkpoints"])
    assert training["steps"] == STEPS
    assert (run["B"] / "model" / "model.safetensors").is_file()


def test_resumed_run_equals_uninterrupted(matrix_killed_and_resumed) -> None:
    a_dir, b_dir = matrix_killed_and_resumed["A"], matrix_killed_and_resumed["B"]
    a, b = _metrics(a_dir), _metrics(b_dir)
    assert a["training"]["resumed_from_step"] is None
    assert b["best_validation_metric"] == a["best_validation_metric"]
    for split in ("test", "validation"):
        for key, value in a[split].items():
            if isinstance(value, int | float):
                assert b[split][key] == pytest.approx(value, abs=1e-6, rel=0), f"{split}.{key}"
    # The saved model is the best evaluation's; the newest checkpoint holds the weights at the last step.
    assert_same_weights(
        a_dir, b_dir, ("model/model.safetensors", f"checkpoints/step-{STEPS:08d}/weights.safetensors")
    )


def test_at_most_keep_checkpoints_remain(matrix_killed_and_resumed) -> None:
    for name in ("A", "B"):
        complete = _complete_checkpoints(matrix_killed_and_resumed[name])
        assert 0 < len(complete) <= KEEP, f"{name}: {sorted(complete)}"
        assert max(complete) == STEPS, (
            f"{name}: the newest checkpoint is not the last step: {sorted(complete)}"
        )


def test_resuming_a_finished_run_says_so_exits_0_and_changes_nothing(
    matrix_killed_and_resumed, caplog
) -> None:
    # A kill after metrics.json (written last) leaves a finished run: a `fit --resume` retry must end, not fail.
    run_dir = matrix_killed_and_resumed["B"]
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with caplog.at_level("WARNING", logger="transferkit"):
        assert main(["fit", "--resume", str(run_dir)]) == 0
    assert any(
        "already finished" in r.getMessage() and str(run_dir) in r.getMessage() for r in caplog.records
    )
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_resuming_a_folder_without_config_exits_2(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "not-a-run"
    (folder / "checkpoints" / "step-00000003").mkdir(parents=True)
    assert main(["fit", "--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "config.yaml" in err
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints"]  # nothing was written


def assert_same_weights(a_dir: Path, b_dir: Path, files) -> None:
    """The safetensors files ``files`` (relative paths) of two run folders hold the same tensors to 1e-6."""
    for rel in files:
        wa, wb = load_file(a_dir / rel), load_file(b_dir / rel)
        assert wa.keys() == wb.keys()
        off = {
            k: float((wa[k] - wb[k]).abs().max())
            for k in wa
            if not torch.allclose(wa[k], wb[k], atol=1e-6, rtol=0)
        }
        assert not off, f"{rel} differs (max abs diff per tensor): {off}"
