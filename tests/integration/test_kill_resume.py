"""``kill -9`` of ``transferkit fit`` at ten seeded moments; ``fit --resume`` always ends as an uninterrupted run.

One reference run A goes to the end. Ten more runs of the same config are each killed with SIGKILL once and
resumed with ``transferkit fit --resume DIR``:

* ``config``: as soon as the run folder's ``config.yaml`` exists, before the first checkpoint. Nothing can be
  restored, so the resume starts at step 0 (``resumed_from_step`` stays None) and must still end as A.
* ``checkpoint-*`` (three): as soon as a ``checkpoints/step-N.partial`` folder appears, N >= a seeded step:
  inside a checkpoint write. The half-written folder must be ignored (resume from the one before it) and
  swept away by the resumed run.
* ``final-save``: as soon as ``model.partial`` appears: training is over, the run was writing its outputs
  (here after stopping early, so the resume must not train on past the stop).
* ``finished``: as soon as ``metrics.json`` (the last file a run writes) exists. A finished run is finished:
  ``fit --resume`` says so, exits 0 and changes nothing (a ``resume until it succeeds`` loop ends).
* ``time-*`` (four): at seeded moments spread over A's span from ``config.yaml`` to its exit.

Every resumed run must end with A's test and validation metrics (1e-6), A's best step and A's saved
weights (1e-6), have resumed from the newest complete checkpoint the kill left (never a ``.partial`` one),
and hold the same files as A: no ``.partial`` / ``.old`` folder or temporary file left anywhere.

The config trains with a high learning rate and stops early (patience 3; A stops at step 14 of 24 with its
best at step 8), a checkpoint at every step (keep 2), so writes are frequent and best != last.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from transferkit.training.checkpoint import checkpoint_problem

pytestmark = pytest.mark.slow

SEED = 8  # hardening issue, item 8
ROWS = 60
CONFIG = [
    "--backbone", "tiny-bert", "--strategy", "full", "--epochs", "4",
    "training.batch_size=8", "training.learning_rate=1e-3", "training.evaluations_per_epoch=3",
    "training.early_stopping_patience=3", "training.checkpoint_every_steps=1", "training.keep_checkpoints=2",
    "training.progress=false", "evaluation.pretrained_baseline=false",
]  # fmt: skip
ENV = {
    **os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
    "TRANSFERKIT_PRECISION": "fp32",
}  # fmt: skip
LANES = 2  # killed runs at once (a 2-core machine)
POLL = 0.001  # seconds between looks at the run folder: a checkpoint write lasts tens of ms
TIMEOUT = 240
# what a kill may leave that is not the run's: utils.io's temporary files and folders
JUNK = re.compile(r"\.tmp(\.[^.]+)?$|\.partial$|\.old$")


@dataclass
class Kill:
    """One killed run: when to kill it, and what the kill left."""

    name: str
    aim: str  # config | checkpoint | model | finished | time
    at: float = 0.0  # checkpoint: the first step whose .partial is a target; time: fraction of A's span
    returncode: int | None = None
    left: list[str] = field(default_factory=list)  # run folder after the kill, relative paths
    complete_steps: list[int] = field(default_factory=list)  # step-N folders with COMPLETE.json after it
    resume_log: str = ""
    resume_rc: int | None = None
    metrics_before: bytes | None = None  # metrics.json at the kill (the finished case)


def _plan(rng: random.Random) -> list[Kill]:
    kills = [Kill("config", "config"), Kill("final-save", "model"), Kill("finished", "finished")]
    # aimed at three distinct steps' checkpoint writes, before A's early stop at step 14
    kills += [Kill(f"checkpoint-{s}", "checkpoint", s) for s in sorted(rng.sample(range(1, 13), 3))]
    # four moments, one in each quarter of A's span (stratified: spread, and still seeded)
    kills += [Kill(f"time-{i}", "time", (i + rng.random()) / 4) for i in range(4)]
    return kills


def _test_resume():
    """tests/unit/training/test_resume.py, whose toy data and weight comparison this suite shares."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "training"))
    try:
        import test_resume
    finally:
        sys.path.pop(0)
    return test_resume


def _frame(rows: int, seed: int = 0) -> str:
    """``text,label`` CSV text of test_resume's toy data (label set by one keyword among filler words)."""
    return _test_resume()._resume_frame(rows, seed).to_csv(index=False)


def _popen(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen(
            [sys.executable, "-m", "transferkit.cli.main", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )


def _start(run_dir: Path, train: Path, log: Path) -> subprocess.Popen:
    return _popen(["fit", "--train", str(train), *CONFIG, "--output", str(run_dir)], log)


def _wait_for(proc: subprocess.Popen, ready, what: str) -> bool:
    """Polls until ``ready()``; False when the process ended first."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no {what} in {TIMEOUT} s"
        time.sleep(POLL)
    return True


def _partial_checkpoint(run_dir: Path, first: int) -> bool:
    try:
        names = os.listdir(run_dir / "checkpoints")
    except FileNotFoundError:
        return False
    return any(n.endswith(".partial") and int(n[5:13]) >= first for n in names if n.startswith("step-"))


def _tree(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))


def _complete_steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    found = folder.glob("step-????????/COMPLETE.json") if folder.is_dir() else []
    return sorted(int(p.parent.name[5:]) for p in found)


def _kill_and_resume(kill: Kill, root: Path, train: Path, span: float) -> Kill:
    run_dir = root / kill.name
    proc = _start(run_dir, train, root / f"{kill.name}.log")
    try:
        config = run_dir / "config.yaml"
        if _wait_for(proc, config.is_file, "config.yaml"):
            if kill.aim == "time":
                until = time.monotonic() + kill.at * span
                _wait_for(proc, lambda: time.monotonic() >= until, "moment")
            elif kill.aim == "checkpoint":
                _wait_for(proc, lambda: _partial_checkpoint(run_dir, int(kill.at)), "checkpoint write")
            elif kill.aim == "model":
                _wait_for(proc, (run_dir / "model.partial").is_dir, "model.partial")
            elif kill.aim == "finished":
                _wait_for(proc, (run_dir / "metrics.json").is_file, "metrics.json")
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # only after a failure above
            proc.kill()
    kill.returncode = proc.returncode
    kill.left, kill.complete_steps = _tree(run_dir), _complete_steps(run_dir)
    if (run_dir / "metrics.json").is_file():
        kill.metrics_before = (run_dir / "metrics.json").read_bytes()
    log = root / f"{kill.name}.resume.log"
    resume = _popen(["fit", "--resume", str(run_dir)], log)
    try:
        resume.wait(timeout=TIMEOUT)
    finally:
        if resume.poll() is None:
            resume.kill()
    kill.resume_rc, kill.resume_log = resume.returncode, log.read_text()
    return kill


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A (uninterrupted, timed from config.yaml to exit) and the ten killed-and-resumed runs."""
    root = tmp_path_factory.mktemp("kill")
    train = root / "toy.csv"
    train.write_text(_frame(ROWS))
    a = _start(root / "A", train, root / "A.log")
    try:
        assert _wait_for(a, (root / "A" / "config.yaml").is_file, "config.yaml"), "A ended before config.yaml"
        t0 = time.monotonic()
        a.wait(timeout=TIMEOUT)
    finally:
        if a.poll() is None:
            a.kill()
    span = time.monotonic() - t0
    assert a.returncode == 0, f"A exited {a.returncode}:\n{(root / 'A.log').read_text()[-3000:]}"
    kills = _plan(random.Random(SEED))
    with ThreadPoolExecutor(LANES) as pool:
        done = list(pool.map(lambda k: _kill_and_resume(k, root, train, span), kills))
    return {"A": root / "A", "root": root, "span": span, "kills": {k.name: k for k in done}}


def _kill_ids() -> list[str]:
    return [k.name for k in _plan(random.Random(SEED))]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _phase(kill: Kill) -> str:
    """What the kill interrupted, read from what it left."""
    if "metrics.json" in kill.left:
        return "finished"
    if any(p.startswith("model") for p in kill.left) or "labels.json" in kill.left:
        return "final save"
    if any(p.startswith("checkpoints/") and p.endswith(".partial") for p in kill.left):
        return "checkpoint write"
    return "training" if kill.complete_steps else "before the first checkpoint"


def test_the_kills_hit_every_phase(killed_runs) -> None:
    kills = killed_runs["kills"]
    phases = {name: _phase(k) for name, k in kills.items()}
    print(f"\nA's span {killed_runs['span']:.1f} s; " + ", ".join(f"{n}: {p}" for n, p in phases.items()))
    for name, kill in kills.items():
        if kill.aim != "finished":
            assert kill.returncode == -signal.SIGKILL, f"{name}: exited {kill.returncode} before its kill"
    assert phases["config"] == "before the first checkpoint"
    assert sum(p == "checkpoint write" for p in phases.values()) >= 2, phases
    assert phases["final-save"] == "final save", phases
    assert phases["finished"] == "finished", phases


@pytest.mark.parametrize("name", _kill_ids())
def test_resume_ends_as_the_uninterrupted_run(killed_runs, name: str) -> None:
    kill, a_dir = killed_runs["kills"][name], killed_runs["A"]
    run_dir = killed_runs["root"] / name
    assert kill.resume_rc == 0, f"fit --resume exited {kill.resume_rc}:\n{kill.resume_log[-3000:]}"
    a, b = _metrics(a_dir), _metrics(run_dir)
    assert b["best_validation_metric"]["step"] == a["best_validation_metric"]["step"]
    assert b["best_validation_metric"]["value"] == pytest.approx(
        a["best_validation_metric"]["value"], abs=1e-6
    )
    for split in ("test", "validation"):
        for key, value in a[split].items():
            if isinstance(value, int | float):
                assert b[split][key] == pytest.approx(value, abs=1e-6, rel=0), f"{split}.{key}"
    for key in ("steps", "stopped_early", "train_tokens"):
        assert b["training"][key] == a["training"][key], key
    _test_resume().assert_same_weights(
        a_dir,
        run_dir,
        ("model/model.safetensors", f"checkpoints/step-{a['training']['steps']:08d}/weights.safetensors"),
    )


@pytest.mark.parametrize("name", _kill_ids())
def test_no_partial_folder_is_loaded_or_left(killed_runs, name: str) -> None:
    kill, a_dir = killed_runs["kills"][name], killed_runs["A"]
    run_dir = killed_runs["root"] / name
    # the resumed run only mentions a .partial folder to say that it removed it before training
    mentions = [line for line in kill.resume_log.splitlines() if ".partial" in line]
    assert all(line.startswith("INFO transferkit: removed ") for line in mentions), mentions
    if kill.metrics_before is None:
        # resumed from the newest checkpoint whose write completed (its marker is written last), or from 0
        expected = max(kill.complete_steps, default=None)
        assert _metrics(run_dir)["training"]["resumed_from_step"] == expected, kill.complete_steps
    # the same files as A: every folder complete, nothing half-written left behind
    tree, reference = _tree(run_dir), _tree(a_dir)
    junk = [p for p in tree if any(JUNK.search(part) for part in Path(p).parts)]
    assert not junk, junk
    assert [p for p in tree if not p.startswith("logs/")] == [
        p for p in reference if not p.startswith("logs/")
    ]
    for step in (run_dir / "checkpoints").iterdir():
        assert checkpoint_problem(step) is None, f"{step.name}: {checkpoint_problem(step)}"


def test_resuming_a_finished_run_says_so_and_changes_nothing(killed_runs) -> None:
    kill = killed_runs["kills"]["finished"]
    run_dir = killed_runs["root"] / "finished"
    assert kill.resume_rc == 0, kill.resume_log[-3000:]
    assert "already finished" in kill.resume_log, kill.resume_log[-3000:]
    assert (run_dir / "metrics.json").read_bytes() == kill.metrics_before
    assert _tree(run_dir) == kill.left
