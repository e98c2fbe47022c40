"""`transferkit compare` through the real CLI on MiniLM and rotten_tomatoes: killed with SIGKILL in the
middle of a cell, resumed, and reported; the cells are run folders the other commands read."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
ARGS = ["--dataset", "rotten_tomatoes", "--strategies", "linear-probe,lp-ft", "--budgets", "8,16", "--seeds", "1",
        "data.max_eval_samples=120", "backbone.max_length=48", "training.progress=false"]  # fmt: skip


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "transferkit.cli.main", "compare", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, start_new_session=True,
    )  # fmt: skip


def _mid_cell_with_checkpoint(folder: Path) -> bool:
    for cell in (folder / "cells").glob("*"):
        ckpt = cell / "checkpoints"
        if (
            not (cell / "metrics.json").exists()
            and ckpt.is_dir()
            and any(re.fullmatch(r"step-\d+", p.name) for p in ckpt.iterdir())
        ):
            return True
    return False


def test_compare_resumes_after_sigkill_and_writes_the_report(tmp_path) -> None:
    out = tmp_path / "cmp"
    proc = _cli(*ARGS, "--output", str(out))
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and not _mid_cell_with_checkpoint(out):
        time.sleep(0.2)
    assert proc.poll() is None, (
        "compare finished before it could be interrupted:\n" + proc.stdout.read()[-3000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = json.loads((out / "results.json").read_text())
    done_before = {c["id"]: c["wall_seconds"] for c in before["cells"] if c["status"] == "done"}
    assert done_before and len(done_before) < len(before["cells"])

    again = _cli("--resume", str(out))
    log, _ = again.communicate(timeout=1500)
    assert again.returncode == 0, log[-3000:]
    assert "resuming from its checkpoint" in log
    after = json.loads((out / "results.json").read_text())
    assert {c["status"] for c in after["cells"]} == {"done"}, log[-3000:]
    for c in after["cells"]:
        if c["id"] in done_before:
            assert c["wall_seconds"] == done_before[c["id"]]  # finished cells were not run again
    html = (out / "report.html").read_text()
    assert "scratch" in html and "data:image/png;base64," in html
    assert "compare: 10/10 cells done" in log

    import transferkit

    lp = next(c for c in after["cells"] if c["strategy"] == "lp-ft")
    pred = transferkit.load(out / lp["run_dir"]).predict(["a gorgeous, moving film", "dull and lifeless"])
    assert len(pred) == 2
