"""Resident memory over time of one ``transferkit.fit``, with the run's phases marked: where does the peak occur?

A thread samples this process's RSS (``/proc/self/statm``) every ``--interval`` ms while the fit runs; the
fit's phases (model built, strategy applied, frozen features, each training step block, each validation pass,
the adapter merge, the final evaluation, the saved run) are marked by wrapping the functions that do them.
Prints the peak of every phase and writes a JSON trace plus a plot (one line per strategy) beside it.

Usage:
    python benchmarks/trace_memory.py --strategies full lora                  # bench_strategies' settings
    python benchmarks/trace_memory.py --strategies full lora --train-size 500 --epochs 1
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets HF_HUB_OFFLINE before anything loads transformers)

SCRIPT = Path(__file__).resolve()
PAGE_MIB = 4096 / 2**20


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MIB


class Sampler:
    """RSS samples ``(seconds, MiB)`` every ``interval`` s on a daemon thread, plus named phase spans."""

    def __init__(self, interval: float):
        self.interval, self.t0 = interval, time.perf_counter()
        self.samples: list[tuple[float, float]] = []
        self.phases: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((self.now(), rss_mib()))
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @contextlib.contextmanager
    def phase(self, name: str):
        start, before = self.now(), rss_mib()
        try:
            yield
        finally:
            self.phases.append({"name": name, "start": start, "end": self.now(), "rss_before": before})

    def wrap(self, owner, attr: str, name: str | None = None) -> None:
        """Replaces ``owner.attr`` by a wrapper that marks each call as a phase."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def marked(*a, **k):
            with self.phase(name or attr):
                return fn(*a, **k)

        setattr(owner, attr, marked)

    def summary(self) -> list[dict]:
        """Per phase: its peak RSS and the rise over the RSS it started at."""
        out = []
        for p in sorted(self.phases, key=lambda p: p["start"]):
            inside = [r for t, r in self.samples if p["start"] <= t <= p["end"]] or [p["rss_before"]]
            out.append(p | {"peak": max(inside), "rise": max(inside) - p["rss_before"]})
        return out


def instrument(sampler: Sampler) -> None:
    """Marks the fit's phases by wrapping the functions that do them (in the namespaces that call them)."""
    import transferkit.tasks.recipe as shared  # the steps every recipe calls
    import transferkit.tasks.text_classification.fit as recipe  # the text recipe's own namespace
    import transferkit.training.loop as loop
    from transferkit.strategies import STRATEGIES

    phases = {recipe: ("load_splits", "build_model", "frozen_features", "write_outputs"),
              shared: ("fit_probe", "train_loop")}  # fmt: skip
    missing = [f"{m.__name__}.{a}" for m, names in phases.items() for a in names if not hasattr(m, a)]
    if missing:  # the recipe was restructured: say so instead of silently tracing no phases
        raise SystemExit(f"trace_memory: no {', '.join(missing)}; update instrument()")
    for module, names in phases.items():
        for attr in names:
            sampler.wrap(module, attr)
    for attr in ("forward_in_order", "write_checkpoint"):
        if hasattr(loop, attr):
            sampler.wrap(loop, attr, f"loop.{attr}")  # validation passes and checkpoints inside training
    sampler.wrap(shared, "forward_in_order", "final evaluation")
    get = STRATEGIES.get

    def get_marked(name):
        strategy = get(name)
        apply = strategy.apply

        def applied(*a, **k):
            with sampler.phase("strategy.apply"):
                plan = apply(*a, **k)
            if plan.unload_adapter is not None:
                export = plan.unload_adapter

                def export_marked(*a, **k):
                    with sampler.phase("plan.unload_adapter"):
                        return export(*a, **k)

                plan.unload_adapter = export_marked
            return plan

        return dataclasses.replace(strategy, apply=applied)

    STRATEGIES.get = get_marked


def worker(spec: dict) -> dict:
    import transformers.models.bert.modeling_bert  # noqa: F401

    import transferkit.api

    sampler = Sampler(spec["interval"] / 1000)
    instrument(sampler)
    overrides = [
        f"data.dataset={spec['dataset']}", f"data.max_train_samples={spec['train_size']}",
        f"data.max_eval_samples={spec['max_eval']}", f"backbone.name={spec['backbone']}",
        f"strategy.name={spec['strategy']}", f"training.batch_size={spec['batch_size']}",
        f"training.epochs={spec['epochs']}", "training.progress=false", "evaluation.pretrained_baseline=false",
        *spec["overrides"],
    ]  # fmt: skip
    start_rss = rss_mib()
    with tempfile.TemporaryDirectory() as tmp, sampler, sampler.phase("fit"):
        transferkit.api.fit(None, overrides=overrides + [f"output.dir={tmp}/run"])
    return {
        "strategy": spec["strategy"], "overrides": overrides, "rss_after_imports": start_rss,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "samples": sampler.samples, "phases": sampler.summary(),
    }  # fmt: skip


def plot(traces: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(traces), 1, figsize=(12, 3.2 * len(traces)), squeeze=False)
    for ax, (name, tr) in zip(axes[:, 0], traces.items(), strict=True):
        t, r = zip(*tr["samples"], strict=True)
        ax.plot(t, r, lw=0.8, color="black")
        top = max(r)
        for i, p in enumerate(ph for ph in tr["phases"] if ph["name"] != "fit"):
            ax.axvspan(p["start"], p["end"], alpha=0.15, color=f"C{i % 10}")
            ax.text(p["start"], top, p["name"], rotation=90, fontsize=6, va="top")
        ax.set_title(f"{name}: peak {top:.0f} MiB (ru_maxrss {tr['ru_maxrss_mib']:.0f})")
        ax.set_ylabel("RSS MiB")
    axes[-1, 0].set_xlabel("seconds into the fit")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=["full", "lora"])
    ap.add_argument("--dataset", default="rotten_tomatoes")
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--max-eval", type=int, default=500)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--interval", type=float, default=5, help="sampling interval, ms")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="extra config overrides key=value")
    ap.add_argument("--output", type=Path, default=common.RESULTS / "memory-trace.json")
    ap.add_argument("--worker-spec", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_spec:
        args.worker_out.write_text(json.dumps(worker(json.loads(args.worker_spec))))
        return 0
    traces = {}
    for strategy in args.strategies:  # a fresh process each: ru_maxrss and the allocator are its own
        spec = {
            k: v
            for k, v in vars(args).items()
            if k not in ("strategies", "output", "worker_spec", "worker_out")
        }
        spec["strategy"] = strategy
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([sys.executable, str(SCRIPT), "--worker-spec", json.dumps(spec, default=str),
                            "--worker-out", out.name], check=True)  # fmt: skip
            traces[strategy] = json.loads(Path(out.name).read_text())
        tr = traces[strategy]
        print(
            f"\n{strategy}: ru_maxrss {tr['ru_maxrss_mib']:.0f} MiB, after imports {tr['rss_after_imports']:.0f} MiB"
        )
        for p in tr["phases"]:
            print(f"  {p['start']:7.1f}-{p['end']:7.1f} s  {p['name']:<24} start {p['rss_before']:6.0f}  peak {p['peak']:6.0f}  rise {p['rise']:+6.0f} MiB")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(traces))
    plot(traces, args.output.with_suffix(".png"))
    print(f"trace: {args.output} and {args.output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
