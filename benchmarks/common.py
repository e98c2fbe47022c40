"""Shared pieces of the benchmarks: the data every contender sees, the machine, one run per subprocess,
the load other jobs put on the machine during a run, a matmul peak, and py-spy profiles by category.

Nothing here imports transferkit, so a baseline's subprocess pays only for what the baseline itself uses.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Frames:
    """The examples every contender trains and is scored on (columns ``text`` and ``label``, class names)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]  # sorted class names: the head order transferkit uses too

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """(N,) class ids in ``labels`` order."""
        index = {name: i for i, name in enumerate(self.labels)}
        return frame["label"].map(index).to_numpy(dtype=np.int64)


def load_frames(train_size: int, validation_size: int, seed: int, test_size: int | None = None) -> Frames:
    """Seeded samples of the rotten_tomatoes catalog splits (``test_size=None`` keeps all 1,276 test rows)."""
    from transferkit.data import load_catalog_dataset  # the catalog reader only: cached parquet files

    catalog = load_catalog_dataset("rotten_tomatoes")

    def sample(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
        frame = frame[["text", "label"]].astype(str)
        if n is None or n >= len(frame):
            return frame.reset_index(drop=True)
        return frame.sample(n=n, random_state=seed).reset_index(drop=True)

    train = sample(catalog["train"], train_size)
    return Frames(
        train=train,
        validation=sample(catalog["validation"], validation_size),
        test=sample(catalog["test"], test_size),
        labels=sorted(train["label"].unique()),
    )


# ----------------------------------------------------------------------------------------- machine


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_ANNOUNCED = []


def machine() -> dict:
    """Date, CPU model, core count and library versions, for the results file.

    The first call in a process also prints the hardware header line (:func:`transferkit.hardware.header`)
    to stderr, so every benchmark's output says which machine its figures came from.
    """
    model, isa = "unknown", []
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
                isa = [
                    f
                    for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
                    if f in flags
                ]
    except OSError:
        pass
    import torch
    import transformers

    from transferkit import hardware

    header = hardware.header()
    if not _ANNOUNCED:
        print(header, file=sys.stderr, flush=True)
        _ANNOUNCED.append(header)
    return {
        "header": header,  # CPU model, cores, ISA, GPUs, torch, what precision=auto picks
        "precision_auto": hardware.resolve_precision("auto").name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": model,
        "isa": " ".join(isa),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def other_load(seconds: float = 3.0) -> float:
    """Cores kept busy by other processes over ``seconds`` while this process sleeps."""
    before = _busy_seconds()
    time.sleep(seconds)
    return max(0.0, (_busy_seconds() - before) / seconds)


def wait_for_quiet(max_other: float, max_wait: float, log=print) -> dict:
    """Waits (in 60 s naps, at most ``max_wait`` s) until other jobs use under ``max_other`` cores."""
    waited = 0.0
    seen = other_load()
    while seen > max_other and waited < max_wait:
        log(
            f"  machine busy: other jobs use {seen:.2f} cores, load average {os.getloadavg()[0]:.2f}; waiting 60 s"
        )
        time.sleep(60)
        waited += 60
        seen = other_load()
    return {"other_cores_before": round(seen, 2), "waited_s": waited}


# ------------------------------------------------------------------------------------ subprocesses


def run_worker(script: Path, name: str, argv: list[str], profile: Path | None = None, rate: int = 50) -> dict:
    """Runs ``script --worker NAME`` in a fresh interpreter and returns the dict it wrote.

    A fresh process per contender makes ``ru_maxrss`` (peak RSS) that contender's own. The machine's busy
    time during the run minus the child's own CPU time gives the cores other jobs took meanwhile.

    Args:
        script: The benchmark script.
        name: Contender to run.
        argv: The benchmark's own arguments, passed on unchanged.
        profile: When given, run under ``py-spy record`` writing raw (collapsed) stacks there.
        rate: py-spy samples per second.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), *argv, "--worker", name, "--worker-out", str(out)]
        if profile is not None:
            spy = Path(sys.executable).with_name("py-spy")
            spy_args = [
                "record",
                "--format",
                "raw",
                "--threads",
                "--idle",
                "-r",
                str(rate),
                "-o",
                str(profile),
                "--",
            ]
            cmd = [str(spy), *spy_args, *cmd]
        load_start = os.getloadavg()
        busy0, child0, t0 = _busy_seconds(), _children_cpu_seconds(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        own = _children_cpu_seconds() - child0
        others = max(0.0, (_busy_seconds() - busy0 - own) / elapsed)
        if proc.returncode == 0 and out.is_file():
            result = json.loads(out.read_text())
        else:  # keep going: the other contenders are still worth measuring
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            result = {
                "error": f"failed (exit {proc.returncode}): {tail[0]}",
                "log_tail": (proc.stdout + proc.stderr)[-4000:],
            }
    # Under py-spy the worker is a grandchild whose CPU time is not reported back: the split is unknown.
    result["machine_during_run"] = {
        "process_seconds": round(elapsed, 1),
        "own_cpu_cores": None if profile else round(own / elapsed, 2),
        "other_cpu_cores": None if profile else round(others, 2),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    return result


def add_contender_args(ap, contenders, quick_help: str) -> None:
    """``--only``, ``--quick`` and the hidden worker flags of :func:`contenders_main`."""
    import argparse

    ap.add_argument(
        "--only", default=",".join(contenders), help=f"comma-separated subset of {', '.join(contenders)}"
    )
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)


def contenders_main(script: Path, argv: list[str], args, workers: dict, report, stem: str) -> int:
    """The driver of a benchmark whose contenders each run in a fresh process.

    In a worker process (``--worker NAME``) runs that contender and writes its dict; otherwise runs every
    contender of ``args.only`` (comma-separated) through :func:`run_worker`, prints ``report(runs)`` line by
    line and writes ``results/STEM.json`` (``STEM-quick.json`` with ``--quick``).
    """
    if args.worker:
        Path(args.worker_out).write_text(json.dumps(workers[args.worker](args)))
        return 0
    runs, info = {}, machine()  # prints the hardware header first
    for name in [n for n in args.only.split(",") if n]:
        if name not in workers:
            raise SystemExit(f"unknown contender {name!r}; known: {', '.join(workers)}")
        print(f"running {name} ...", flush=True)
        runs[name] = run_worker(script, name, argv)
    for line in report(runs):
        print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (f"{stem}-quick.json" if args.quick else f"{stem}.json")
    out.write_text(json.dumps({"args": vars(args), "machine": info, "runs": runs}, indent=2))
    print(f"results: {out}")
    return 0


# ------------------------------------------------------------------------------------------ matmul


def matmul_peak(repeats: int = 5, min_seconds: float = 0.5) -> dict:
    """Best fp32 matmul GFLOP/s on this machine, for square and for MiniLM-shaped products.

    Shapes: 2048^3, and a batch of 16 x 32 tokens through MiniLM's layers (384 -> 1536, 1536 -> 384, 384 -> 384).
    Each shape: warm up, then ``repeats`` timings of a loop lasting at least ``min_seconds``; best kept.
    """
    import torch

    shapes = {"2048x2048 @ 2048x2048": (2048, 2048, 2048), "512x384 @ 384x1536": (512, 384, 1536),
              "512x1536 @ 1536x384": (512, 1536, 384), "512x384 @ 384x384": (512, 384, 384)}  # fmt: skip
    out = {}
    for label, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        flops = 2.0 * m * k * n
        for _ in range(3):
            torch.mm(a, b, out=c)
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        iters = max(1, int(min_seconds / max(time.perf_counter() - t, 1e-6)))
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(iters):
                torch.mm(a, b, out=c)
            best = max(best, flops * iters / (time.perf_counter() - t))
        out[label] = round(best / 1e9, 2)
    return {"gflops_by_shape": out, "peak_gflops": max(out.values()), "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------- profiles

# Where a sampled main-thread stack is spent. A frame reads "Class.function (file:line)"; the first category
# with a matching frame anywhere in the stack wins, so the order matters: evaluation and outputs before
# forward (they run forward passes too), the optimizer and backward before what they call.
_NAMES = {
    "import": {"_find_and_load", "_call_with_frames_removed"},
    "evaluation": {"run_eval", "forward_in_order", "evaluate", "predict", "evaluation_loop", "prediction_step"},
    "checkpoint & outputs": {"write_checkpoint", "save_checkpoint", "write_outputs", "write_run", "save_model", "save_pretrained", "_save"},
    "optimizer": {"zero_grad"},
    "grad clipping": {"clip_grad_norm_", "_clip_grads_with_norm_", "_get_total_norm"},
    "backward": {"backward", "_engine_run_backward"},
    "setup (load, tokenize)": {"from_pretrained", "build_model", "load_splits", "_targets_and_data", "prepare", "create_optimizer",
                               "Trainer.__init__", "Accelerator.__init__", "TokenizedDataset.__init__", "_encode", "set_seed"},
    "data (batching)": {"collate", "default_collate", "Collator.__call__", "DataCollatorWithPadding.__call__"},
    "forward": {"_call_impl", "_wrapped_call_impl", "forward", "compute_loss"},
}  # fmt: skip
_FILES = {
    "checkpoint & outputs": ("tensorboard/", "transferkit/training/logger.py", "safetensors/"),
    "optimizer": ("torch/optim/", "accelerate/optimizer.py", "accelerate/scheduler.py"),
    "data (batching)": ("torch/utils/data/", "data_collator.py"),
    "forward": ("transformers/models/",),
}  # fmt: skip
OTHER = "other (loop code, .item(), idle)"


def _category(frames: list[str]) -> str:
    parsed = [(f.partition(" (")[0], f.partition(" (")[2]) for f in frames]  # (Class.function, file:line)
    for category, names in _NAMES.items():
        files = _FILES.get(category, ())
        if any(
            full in names or full.rsplit(".", 1)[-1] in names or where.startswith(files)
            for full, where in parsed
        ):
            return category
    return OTHER


def summarize_profile(raw: Path, rate: int, start_marker: str | None = None) -> dict:
    """Main-thread wall-clock share per category from a ``py-spy record --format raw --threads --idle`` file.

    Args:
        raw: Collapsed stacks, one ``frame;frame;... count`` per line, first frame the thread.
        rate: Samples per second of the recording.
        start_marker: If given, only stacks containing a frame starting with it count (the worker's own call).

    Returns:
        ``{"samples": N, "seconds": N / rate, "shares": {category: fraction}, "top_leaf_frames": [[frame, fraction], ...]}``.
    """
    counts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "MainThread" not in frames[0]:
            continue
        body = frames[1:]
        if start_marker and not any(f.startswith(start_marker) for f in body):
            continue
        total += int(n)
        counts[_category(body)] += int(n)
        leaves[body[-1] if body else "(idle)"] += int(n)
    shares = {k: round(v / total, 4) for k, v in counts.most_common()} if total else {}
    top = [[k, round(v / total, 4)] for k, v in leaves.most_common(12)] if total else []
    return {"samples": total, "seconds": round(total / rate, 1), "shares": shares, "top_leaf_frames": top}


# ------------------------------------------------------------------------------------------ report


def _fmt(value, digits: int = 1, star: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{star}"


def report(result: dict, labels: dict[str, str], console) -> None:
    """Prints the runs, the ratios with their verdicts, the FLOP/s figures and the profiles (rich tables)."""
    from rich.table import Table

    runs = result["runs"]
    s = result["settings"]
    t = Table(title=f"rotten_tomatoes, MiniLM-L6: {s['train_size']} training texts, {runs['_test_rows']} test rows, {s['epochs']} epochs (full) / {s['head_epochs']} (head)")  # fmt: skip
    for col in ("contender", "wall s", "train s", "train samples/s", "peak RSS MiB", "test acc", "padded/real tokens", "import s", "other jobs cores / load", "notes"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("contender", "notes") else "right")
    for name, label in labels.items():
        r = runs.get(name)
        if r is None or name == "matmul":
            continue
        m = r["machine_during_run"]
        load = f"{m['other_cpu_cores']:.2f} / {m['load_average_start'][0]:.2f}"
        if "error" in r:
            t.add_row(label, *["-"] * 7, load, f"[red]{r['error']}[/red]")
            continue
        star = " *" if r.get("extrapolated") else ""
        acc = "n/a (extrapolated)" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        pad = (
            f"{r['padded_tokens'] / r['train_tokens']:.2f}"
            if r.get("padded_tokens") and r.get("train_tokens")
            else "-"
        )
        t.add_row(label, _fmt(r["wall_s"], 1, star), _fmt(r["train_s"], 1, star), _fmt(r["train_samples_per_s"], 1, star),
                  f"{r['peak_rss_mib']:.0f}", acc, pad, _fmt(r.get("import_s")), load, r.get("note", ""))  # fmt: skip
    console.print(t)
    console.print("* extrapolated (see notes). other jobs cores: CPU that other processes used during the run; load: 1-min load average at its start.")  # fmt: skip

    c = Table(title="ratios: how much faster transferkit is")
    for col in ("comparison", "measure", "ratio", "target", "test accuracy: ours vs theirs", "verdict"):
        c.add_column(col)
    for row in result["comparisons"]:
        verdict = "[green]PASS[/green]" if row["pass"] else "[red]FAIL[/red]"
        c.add_row(
            row["title"],
            row["measure"],
            f"{row['ratio']:.2f}x",
            f">= {row['target']:g}x",
            row["accuracy"],
            verdict,
        )
    console.print(c)

    f = result.get("flops")
    if f:
        mm = runs["matmul"]
        shapes = ", ".join(f"{k} {v:.1f}" for k, v in mm["gflops_by_shape"].items())
        console.print(
            f"fp32 matmul peak, {mm['threads']} threads: {f['peak_gflops']:.1f} GFLOP/s (best of several: {shapes})"
        )
        for name in ("tk_full", "hf_tuned"):
            if name in f:
                g = f[name]
                console.print(f"training FLOP/s, {labels[name]}: {g['gflops']:.1f} GFLOP/s = {g['percent_of_peak']:.1f}% of peak "
                              f"(6 x {g['nonembedding_parameters']:,} non-embedding params x {g['train_tokens']:,} real tokens / train s)")  # fmt: skip

    profiles = result.get("profiles") or {}
    if profiles:
        p = Table(
            title="where the time goes: py-spy samples of the main thread, from model loading to the test score"
        )
        p.add_column("category")
        for name in profiles:
            p.add_column(f"{labels[name]}: s (%)", justify="right")
        cats = list(dict.fromkeys(k for prof in profiles.values() for k in prof["shares"]))
        for cat in cats:
            cells = [f"{prof['shares'].get(cat, 0) * prof['seconds']:.1f} ({100 * prof['shares'].get(cat, 0):.1f}%)" for prof in profiles.values()]  # fmt: skip
            p.add_row(cat, *cells)
        p.add_row("total sampled", *[f"{prof['seconds']:.1f}" for prof in profiles.values()])
        console.print(p)
