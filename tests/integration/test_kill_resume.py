"""``kill -9`` of ``transferkit fit`` at seeded moments, for every task; ``fit --resume`` always ends as an
uninterrupted run.

Per task, one reference run A goes to the end. More runs of the same config are each killed with SIGKILL
once and resumed with ``transferkit fit --resume DIR``. Text classification gets ten moments:

* ``config``: as soon as the run folder's ``config.yaml`` exists, before the first checkpoint. Nothing can be
  restored, so the resume starts at step 0 (``resumed_from_step`` stays None) and must still end as A.
* ``checkpoint-*`` (three): as soon as a ``checkpoints/step-N.partial`` folder appears, N >= a seeded step:
  inside a checkpoint write (the run is stopped with SIGSTOP and looked at again before the kill, so the
  kill lands inside a write). The half-written folder must be ignored (resume from the one before it) and
  swept away by the resumed run.
* ``final-save``: as soon as ``model.partial`` appears: training is over, the run was writing its outputs
  (here after stopping early, so the resume must not train on past the stop).
* ``finished``: as soon as ``metrics.json`` (the last file a run writes) exists. A finished run is finished:
  ``fit --resume`` says so, exits 0 and changes nothing (a ``resume until it succeeds`` loop ends).
* ``time-*`` (four): at seeded moments spread over A's span from ``config.yaml`` to its exit.

Token classification, image classification and generation get three each, on the tiny random models and
data of the task matrix (tests/unit/tasks/test_task_matrix.py; train = validation = test): one
``checkpoint-*`` at a seeded step, ``final-save``, and ``training-0``: after the run's first checkpoint, a
seeded share of A's time from its first checkpoint to its final save (these runs train for a third of their
span or less, so a moment of the whole span would mostly hit set-up or the final save). What is the same
for every task (a finished run, a kill before the first checkpoint) is covered once, by text.

Every resumed run must end with A's test and validation metrics (1e-6), A's best step and A's saved
weights (1e-6), have resumed from the newest complete checkpoint the kill left (never a ``.partial`` one),
and hold the same files as A: no ``.partial`` / ``.old`` folder or temporary file left anywhere.

Each config checkpoints at every step (keep 2), so writes are frequent, and evaluates often with patience
3, so best != last where it stops early:

| task | A | kills |
|---|---|---|
| text-classification (tiny-bert, 60 rows) | stops at step 14 of 24, best at 8 | 10 |
| token-classification (tiny-bert, 24 sentences) | stops at step 6 of 18, best at 3 | 3 |
| image-classification (tiny-efficientnet, 16 images) | stops at step 8 of 32, best at 2 | 3 |
| generation (tiny-llama, 16 pairs) | runs all 16 steps, best at 16 (perplexity falls) | 3 |
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from transferkit.training.checkpoint import checkpoint_problem

pytestmark = pytest.mark.slow

SEED = 8  # hardening issue, item 8
ROWS = 60
COMMON = [
    "training.checkpoint_every_steps=1", "training.keep_checkpoints=2", "training.early_stopping_patience=3",
    "training.progress=false", "evaluation.pretrained_baseline=false",
]  # fmt: skip
CONFIG = [
    "--backbone", "tiny-bert", "--strategy", "full", "--epochs", "4",
    "training.batch_size=8", "training.learning_rate=1e-3", "training.evaluations_per_epoch=3", *COMMON,
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
    aim: str  # config | checkpoint | model | finished | time | training
    # checkpoint: the first step whose .partial is a target; time: a share of A's span; training: a share of
    # A's time from its first checkpoint to its final save
    at: float = 0.0
    returncode: int | None = None
    left: list[str] = field(default_factory=list)  # run folder after the kill, relative paths
    complete_steps: list[int] = field(default_factory=list)  # step-N folders with COMPLETE.json after it
    resume_log: str = ""
    resume_rc: int | None = None
    metrics_before: bytes | None = None  # metrics.json at the kill (the finished case)


def _text_plan(rng: random.Random, a_steps: int) -> list[Kill]:
    kills = [Kill("config", "config"), Kill("final-save", "model"), Kill("finished", "finished")]
    # aimed at three distinct steps' checkpoint writes, before A's early stop (at step 14)
    kills += [Kill(f"checkpoint-{s}", "checkpoint", s) for s in sorted(rng.sample(range(1, a_steps - 1), 3))]
    # four moments, one in each quarter of A's span (stratified: spread, and still seeded)
    kills += [Kill(f"time-{i}", "time", (i + rng.random()) / 4) for i in range(4)]
    return kills


def _short_plan(rng: random.Random, a_steps: int) -> list[Kill]:
    """Three kills: inside a checkpoint write at a seeded step before A's last, the final save, and a seeded
    moment of training."""
    step = rng.randrange(1, a_steps)
    # these runs train for a third of their span or less: the moment is one of A's training, counted from
    # the kill's first checkpoint (set-up and the final save have kills of their own)
    return [Kill(f"checkpoint-{step}", "checkpoint", step), Kill("final-save", "model"),
            Kill("training-0", "training", rng.random())]  # fmt: skip


@dataclass(frozen=True)
class Suite:
    """One task's killed runs: how to write its data and fit it, and where to kill it."""

    args: Callable[[Path], list[str]]  # folder -> the arguments after ``fit`` (its data written into folder)
    plan: Callable[[random.Random, int], list[Kill]]  # (rng, a_steps) -> the kills
    a_steps: int  # the steps A trains (checked): checkpoint kills aim before the last

    def kills(self) -> list[Kill]:
        return self.plan(random.Random(SEED), self.a_steps)


def _text_args(folder: Path) -> list[str]:
    train = folder / "toy.csv"
    train.write_text(_frame(ROWS))
    return ["--train", str(train), *CONFIG]


def _matrix_args(task: str, epochs: int, *settings: str):
    """A task of the task matrix on its tiny backbone and data (train = validation = test)."""

    def args(folder: Path) -> list[str]:
        case = _task_matrix().CASES[task]
        data = case.write(folder)
        return ["--task", task, "--backbone", case.backbone, "--strategy", "full", "--epochs", str(epochs),
                *(f"data.{s}={data}" for s in ("train", "validation", "test")), *case.overrides,
                "training.learning_rate=1e-3", *settings, *COMMON]  # fmt: skip

    return args


SUITES = {
    "text-classification": Suite(_text_args, _text_plan, 14),
    "token-classification": Suite(
        _matrix_args("token-classification", 6, "training.batch_size=8", "training.evaluations_per_epoch=3"),
        _short_plan,
        6,
    ),
    "image-classification": Suite(
        _matrix_args("image-classification", 8, "training.batch_size=4", "training.evaluations_per_epoch=2"),
        _short_plan,
        8,
    ),
    "generation": Suite(
        _matrix_args("generation", 4, "training.batch_size=4", "training.evaluations_per_epoch=2"),
        _short_plan,
        16,
    ),
}


def _test_resume():
    """tests/unit/training/test_resume.py, whose toy data and weight comparison this suite shares."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "training"))
    try:
        import test_resume
    finally:
        sys.path.pop(0)
    return test_resume


def _task_matrix():
    """tests/unit/tasks/test_task_matrix.py, whose tiny data per task this suite trains on."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "tasks"))
    try:
        import test_task_matrix
    finally:
        sys.path.pop(0)
    return test_task_matrix


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


def _start(run_dir: Path, args: list[str], log: Path) -> subprocess.Popen:
    return _popen(["fit", *args, "--output", str(run_dir)], log)


def _wait_for(proc: subprocess.Popen, ready, what: str) -> bool:
    """Polls until ``ready()``; False when the process ended first."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no {what} in {TIMEOUT} s"
        time.sleep(POLL)
    return True


def _partial_steps(run_dir: Path, first: int) -> list[int]:
    """Steps >= ``first`` whose checkpoint is being written (a ``step-N.partial`` folder)."""
    try:
        names = os.listdir(run_dir / "checkpoints")
    except FileNotFoundError:
        return []
    steps = [int(n[5:13]) for n in names if n.startswith("step-") and n.endswith(".partial")]
    return [s for s in steps if s >= first]


def _stop(pid: int) -> None:
    """SIGSTOP, and wait until the kernel has stopped the process (``T`` in /proc/PID/stat)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            time.sleep(0.01)  # no /proc: give the signal time to land
            return
        if state in ("T", "t"):
            return
        time.sleep(POLL / 10)


def _freeze_in_a_checkpoint_write(proc: subprocess.Popen, run_dir: Path, first: int) -> None:
    """Returns with ``proc`` stopped inside the write of a checkpoint of step >= ``first``.

    A write can end between the look that saw its ``.partial`` and the kill; so the process is stopped
    first and looked at again: still there, the kill lands inside that write; gone, it continues and the
    next write is the target. Returns with ``proc`` running if it ended first.
    """
    while _wait_for(proc, lambda first=first: _partial_steps(run_dir, first), "checkpoint write"):
        _stop(proc.pid)
        if _partial_steps(run_dir, first):
            return
        first = max(_complete_steps(run_dir), default=first) + 1
        os.kill(proc.pid, signal.SIGCONT)


def _tree(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))


def _complete_steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    found = folder.glob("step-????????/COMPLETE.json") if folder.is_dir() else []
    return sorted(int(p.parent.name[5:]) for p in found)


def _kill_and_resume(kill: Kill, root: Path, args: list[str], a_times: dict) -> Kill:
    run_dir = root / kill.name
    proc = _start(run_dir, args, root / f"{kill.name}.log")
    try:
        config = run_dir / "config.yaml"
        if _wait_for(proc, config.is_file, "config.yaml"):
            if kill.aim == "time":
                until = time.monotonic() + kill.at * a_times["span"]
                _wait_for(proc, lambda: time.monotonic() >= until, "moment")
            elif kill.aim == "training":  # from this run's first checkpoint, a share of A's training time
                if _wait_for(proc, lambda: _complete_steps(run_dir), "first checkpoint"):
                    until = time.monotonic() + kill.at * a_times["training"]
                    _wait_for(proc, lambda: time.monotonic() >= until, "moment")
            elif kill.aim == "checkpoint":
                _freeze_in_a_checkpoint_write(proc, run_dir, int(kill.at))
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
def killed_runs(tmp_path_factory: pytest.TempPathFactory):
    """``killed_runs(task)``, made once per task: A (uninterrupted, timed from config.yaml to exit) and the
    killed and resumed runs of the task's suite."""
    done: dict[str, dict] = {}

    def get(task: str) -> dict:
        if task not in done:
            done[task] = _kill_suite(task, tmp_path_factory.mktemp(f"kill-{task}"))
        return done[task]

    return get


def _kill_suite(task: str, root: Path) -> dict:
    suite = SUITES[task]
    args = suite.args(root)
    a_dir, seen = root / "A", {}
    a = _start(a_dir, args, root / "A.log")

    def note() -> bool:  # when A's first checkpoint and its final save appeared; never "ready"
        if "checkpoint" not in seen and _complete_steps(a_dir):
            seen["checkpoint"] = time.monotonic()
        if "save" not in seen and ((a_dir / "model.partial").is_dir() or (a_dir / "model").is_dir()):
            seen["save"] = time.monotonic()
        return False

    try:
        assert _wait_for(a, (a_dir / "config.yaml").is_file, "config.yaml"), "A ended before config.yaml"
        t0 = time.monotonic()
        _wait_for(a, note, "A's end")
        a.wait(timeout=TIMEOUT)
    finally:
        if a.poll() is None:
            a.kill()
    a_times = {"span": time.monotonic() - t0, "training": seen["save"] - seen["checkpoint"]}
    assert a.returncode == 0, f"A exited {a.returncode}:\n{(root / 'A.log').read_text()[-3000:]}"
    steps = _metrics(a_dir)["training"]["steps"]
    assert steps == suite.a_steps, (
        f"A trained {steps} steps, not {suite.a_steps}: the kills aim at the old ones"
    )
    kills = suite.kills()
    with ThreadPoolExecutor(LANES) as pool:
        done = list(pool.map(lambda k: _kill_and_resume(k, root, args, a_times), kills))
    return {"A": a_dir, "root": root, **a_times, "kills": {k.name: k for k in done}}


def _kill_ids(task: str) -> list[str]:
    return [k.name for k in SUITES[task].kills()]


KILLS = [pytest.param(task, name, id=f"{task}-{name}") for task in SUITES for name in _kill_ids(task)]


def test_every_registered_task_has_a_suite() -> None:
    from transferkit.tasks import task_names

    assert set(SUITES) == set(task_names())


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


@pytest.mark.parametrize("task", SUITES)
def test_the_kills_hit_every_phase(killed_runs, task: str) -> None:
    runs = killed_runs(task)
    kills = runs["kills"]
    phases = {name: _phase(k) for name, k in kills.items()}
    print(
        f"\n{task}: A's span {runs['span']:.1f} s, training {runs['training']:.1f} s; "
        + ", ".join(f"{n}: {p}" for n, p in phases.items())
    )
    for name, kill in kills.items():
        if kill.aim != "finished":
            assert kill.returncode == -signal.SIGKILL, f"{name}: exited {kill.returncode} before its kill"
    for kill in kills.values():
        if kill.aim == "checkpoint":  # frozen inside the write before the kill: always hit
            assert phases[kill.name] == "checkpoint write", phases
        if kill.aim == "training":
            assert phases[kill.name] in ("training", "checkpoint write"), phases
    assert phases["final-save"] == "final save", phases
    if "config" in kills:
        assert phases["config"] == "before the first checkpoint"
    if "finished" in kills:
        assert phases["finished"] == "finished", phases


@pytest.mark.parametrize(("task", "name"), KILLS)
def test_resume_ends_as_the_uninterrupted_run(killed_runs, task: str, name: str) -> None:
    runs = killed_runs(task)
    kill, a_dir = runs["kills"][name], runs["A"]
    run_dir = runs["root"] / name
    assert kill.resume_rc == 0, f"fit --resume exited {kill.resume_rc}:\n{kill.resume_log[-3000:]}"
    a, b = _metrics(a_dir), _metrics(run_dir)
    assert b["best_validation_metric"]["step"] == a["best_validation_metric"]["step"]
    assert b["best_validation_metric"]["value"] == pytest.approx(
        a["best_validation_metric"]["value"], abs=1e-6
    )
    for split in ("test", "validation"):
        for key, value in a[split].items():
            if isinstance(value, int | float) and not key.endswith("_per_second"):  # measured, not computed
                assert b[split][key] == pytest.approx(value, abs=1e-6, rel=0), f"{split}.{key}"
    for key in ("steps", "stopped_early", "train_tokens"):
        assert b["training"][key] == a["training"][key], key
    _test_resume().assert_same_weights(
        a_dir,
        run_dir,
        ("model/model.safetensors", f"checkpoints/step-{a['training']['steps']:08d}/weights.safetensors"),
    )


@pytest.mark.parametrize(("task", "name"), KILLS)
def test_no_partial_folder_is_loaded_or_left(killed_runs, task: str, name: str) -> None:
    runs = killed_runs(task)
    kill, a_dir = runs["kills"][name], runs["A"]
    run_dir = runs["root"] / name
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
    runs = killed_runs("text-classification")
    kill = runs["kills"]["finished"]
    run_dir = runs["root"] / "finished"
    assert kill.resume_rc == 0, kill.resume_log[-3000:]
    assert "already finished" in kill.resume_log, kill.resume_log[-3000:]
    assert (run_dir / "metrics.json").read_bytes() == kill.metrics_before
    assert _tree(run_dir) == kill.left
