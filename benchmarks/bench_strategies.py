"""Every registered transfer strategy on the same data, one table per data set, with four targets checked.

Each run is ``transferkit.fit`` on the shipped MiniLM-L6 in a fresh Python process of its own, so its peak
RSS (``ru_maxrss`` read when the fit has returned) is its own. All runs share one seeded, stratified training
subsample (``data.max_train_samples``), the catalog test split capped at 500 rows (``data.max_eval_samples``,
which caps validation too), batch 16 and a trunk learning rate of 5e-5 (adapters and heads use their own
multipliers and rates). ``evaluation.pretrained_baseline=false``, so a run's wall time is its strategy's own;
for ``linear-probe`` and ``lp-ft`` it includes the pass that computes the frozen features.

Targets (per data set):
  top-k cache   ``top-k`` k=2 with ``strategy.cache=memory`` trains >= 3x faster than with ``cache=off``
  lora memory   ``lora``'s peak RSS is below ``full``'s
  probe         ``linear-probe`` within 5 points of ``full``'s test accuracy at under 1/10 of its wall time
  FLOP/s        ``full`` achieves > 40% of this machine's fp32 matmul peak
                (6 x non-embedding parameters x real training tokens / training seconds)

Before every run the script waits (60 s naps, at most ``--max-wait`` s) while ``bench_core.py`` runs or the
1-minute load average is above ``--max-load``, and records the load it ran under.

Usage:
    python benchmarks/bench_strategies.py --quick                  # smoke run, a few minutes
    python benchmarks/bench_strategies.py --markdown               # everything, 30-45 minutes on 2 cores
    python benchmarks/bench_strategies.py --strategies full lora --datasets vader_tweets
    python benchmarks/bench_strategies.py --report benchmarks/results/strategies.json --markdown
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets HF_HUB_OFFLINE before anything loads transformers)

SCRIPT = Path(__file__).resolve()
BACKBONE = "minilm-l6"
BATCH_SIZE = 16
LEARNING_RATE = 5e-5
MAX_EVAL = 500  # validation and test rows, at most
MAX_EVAL_QUICK = 100
HEAD_EPOCHS = 10  # the head trains on cached features: cheap, so it gets more epochs
ADAPTERS = ("lora", "adalora", "ia3")
TOPK_OFF = "top-k/cache=off"  # the extra run of the caching comparison
TARGETS = {"topk_speedup": 3.0, "probe_points": 5.0, "probe_wall_fraction": 0.1, "flops_percent": 40.0}


# ------------------------------------------------------------------------------------------- the runs


def strategy_names() -> list[str]:
    from transferkit.strategies import STRATEGIES

    return STRATEGIES.names()


def plan_runs(strategies: list[str], epochs: float) -> list[dict]:
    """One spec per table row: ``{"key", "strategy", "epochs", "settings": [overrides], "note"}``.

    ``top-k`` runs twice (cached and not); ``gradual`` unfreezes one of MiniLM's 7 groups every
    ``epochs / 7`` epochs, so the head and all six blocks take their turn within the run.
    """
    runs = []
    for name in strategies:
        settings, run_epochs, note = [], epochs, ""
        if name == "head":
            run_epochs, note = HEAD_EPOCHS, f"{HEAD_EPOCHS} epochs on cached features, head lr 1e-3"
        elif name == "linear-probe":
            run_epochs, note = (
                None,
                "closed form (L-BFGS), L2 chosen on validation; wall includes the feature pass",
            )
        elif name == "lp-ft":
            note = "wall includes the probe's feature pass"
        elif name == "top-k":
            settings, note = ["strategy.k=2", "strategy.cache=memory"], "k=2, cache=memory"
        elif name == "gradual":
            every = round(epochs / 7, 4)
            settings, note = [f"strategy.every_epochs={every}"], f"every_epochs={every}"
        elif name in ADAPTERS:
            note = "adapters at lr x lr_multiplier (default)"
        runs.append({"key": name, "strategy": name, "epochs": run_epochs, "settings": settings, "note": note})
        if name == "top-k":
            runs.append({"key": TOPK_OFF, "strategy": "top-k", "epochs": epochs,
                         "settings": ["strategy.k=2", "strategy.cache=off"], "note": "k=2, cache=off"})  # fmt: skip
    return runs


def nonembedding_parameters(run_dir: Path, total: int) -> int | None:
    """``total`` minus the word, position and token-type embedding matrices of the saved model."""
    from safetensors import safe_open

    embeddings = 0
    files = sorted((run_dir / "model").glob("*.safetensors"))
    for f in files:
        with safe_open(str(f), "pt") as st:
            for name in st.keys():  # noqa: SIM118  (safe_open is not iterable)
                if name.split(".")[-2] in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
                    embeddings += math.prod(st.get_slice(name).get_shape())
    return total - embeddings if files else None


def _capture_logs() -> list[str]:
    """Collects the messages of the ``transferkit`` loggers (INFO and up) into the returned list."""
    import logging

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    root = logging.getLogger("transferkit")
    root.setLevel(logging.INFO)
    root.addHandler(Keep(logging.INFO))
    return lines


def worker(spec: dict) -> dict:
    """Inside a fresh process: one ``transferkit.fit``; returns its figures (peak RSS added by the caller)."""
    t_import = time.perf_counter()
    import transformers.models.bert.modeling_bert  # noqa: F401  (loaded lazily by from_pretrained)

    import transferkit.api  # imports are timed apart: transferkit, torch, transformers, BERT, peft

    if spec["strategy"] in ADAPTERS:
        import peft  # noqa: F401  (loaded lazily by the adapter strategies)
    import_s = time.perf_counter() - t_import

    overrides = [
        f"data.dataset={spec['dataset']}", f"data.max_train_samples={spec['train_size']}",
        f"data.max_eval_samples={spec['max_eval']}", f"backbone.name={BACKBONE}", f"strategy.name={spec['strategy']}",
        f"training.batch_size={BATCH_SIZE}", f"training.learning_rate={LEARNING_RATE}",
        f"training.epochs={spec['epochs'] or 1}", f"training.seed={spec['seed']}", "training.progress=false",
        "evaluation.pretrained_baseline=false", *spec["settings"],
    ]  # fmt: skip
    logs = _capture_logs()  # transferkit's own notes (e.g. a cache it could not use)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            run = transferkit.api.fit(None, overrides=overrides + [f"output.dir={tmp}/run"])
        except Exception as err:  # noqa: BLE001  one line for the table, the tail for the report
            return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                    "log_tail": traceback.format_exc()[-3000:], "overrides": overrides, "log": logs}  # fmt: skip
        wall = time.perf_counter() - t0
        m, tr = run.metrics, run.metrics["training"]
        nonemb = nonembedding_parameters(run.run_dir, m["total_parameters"])
    return {
        "accuracy": m["test"]["accuracy"], "f1_macro": m["test"]["f1_macro"], "test_rows": m["test"]["num_examples"],
        "wall_s": wall, "fit_wall_s": tr["wall_seconds"], "import_s": import_s,
        "outputs_s": wall - tr["wall_seconds"], "train_s": tr["train_seconds"],
        "train_samples_per_s": tr["train_samples_per_second"], "train_tokens": tr["train_tokens"], "steps": tr["steps"],
        "trainable_parameters": m["trainable_parameters"], "total_parameters": m["total_parameters"],
        "nonembedding_parameters": nonemb, "overrides": overrides, "log": logs,
    }  # fmt: skip


def worker_matmul(spec: dict) -> dict:
    return common.matmul_peak(repeats=2 if spec["quick"] else 5, min_seconds=0.2 if spec["quick"] else 0.5)


def src_state() -> dict:
    """The commit and a digest of the uncommitted changes under src/ (colleagues edit it while this runs)."""
    import hashlib

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a], cwd=common.ROOT, capture_output=True, text=True, check=False
        ).stdout

    diff = git("diff", "HEAD", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "src_diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:10],
            "src_files_changed": git("diff", "HEAD", "--name-only", "--", "src").split()}  # fmt: skip


# ------------------------------------------------------------------------------------ taking turns


def bench_core_running() -> bool:
    """Whether a colleague's ``bench_core.py`` is running (pgrep, run without a shell, never matches us)."""
    return subprocess.run(["pgrep", "-f", "bench_core.py"], capture_output=True, check=False).returncode == 0


def wait_turn(max_load: float, max_wait: float, log, max_core_wait: float = 7200) -> dict:
    """Naps 60 s at a time while bench_core.py runs (at most ``max_core_wait`` s: timings must not overlap)
    or the machine is loaded (at most ``max_wait`` s).

    Loaded: the 1-minute load average is above ``max_load`` and other processes are using at least half
    a core now (the average alone still carries this script's own previous run for a minute or two).
    """
    waited = loaded_for = 0.0
    while True:
        core, load, others = bench_core_running(), os.getloadavg()[0], common.other_load()
        loaded = load > max_load and others >= 0.5
        if not (core and waited < max_core_wait) and not (loaded and loaded_for < max_wait):
            break
        log(f"  waiting 60 s: bench_core.py {'running' if core else 'not running'}, load average {load:.2f}, other jobs {others:.2f} cores")  # fmt: skip
        time.sleep(60)
        waited += 60
        loaded_for += 0 if core else 60
    return {"waited_s": waited, "bench_core_running": core, "load_average_1m": round(load, 2),
            "other_cores": round(others, 2), "gave_up_waiting": core or loaded}  # fmt: skip


# ---------------------------------------------------------------------------------------- checks


def checks(runs: dict, peak_gflops: float | None) -> list[dict]:
    """The four targets for one data set: ``{"name", "detail", "pass"}`` (``pass`` None when not measurable)."""
    ok = {k: r for k, r in runs.items() if "error" not in r}
    out = []
    on, off = ok.get("top-k"), ok.get(TOPK_OFF)
    if on and off:
        ratio, wall = off["train_s"] / on["train_s"], off["wall_s"] / on["wall_s"]
        fallback = [x for x in on.get("log", []) if "re-run every step" in x]
        why = f" (transferkit logged: {fallback[0].split(': ', 1)[1]})" if fallback else ""
        out.append({"name": f"top-k k=2 cached >= {TARGETS['topk_speedup']:g}x faster than uncached (train s)",
                    "detail": f"train {off['train_s']:.1f} s / {on['train_s']:.1f} s = {ratio:.2f}x; wall {off['wall_s']:.1f} s / {on['wall_s']:.1f} s = {wall:.2f}x{why}",
                    "pass": ratio >= TARGETS["topk_speedup"]})  # fmt: skip
    full, lora = ok.get("full"), ok.get("lora")
    if full and lora:
        out.append({"name": "lora peak RSS below full's",
                    "detail": f"{lora['peak_rss_mib']:.0f} MiB vs {full['peak_rss_mib']:.0f} MiB ({lora['peak_rss_mib'] - full['peak_rss_mib']:+.0f})",
                    "pass": lora["peak_rss_mib"] < full["peak_rss_mib"]})  # fmt: skip
    probe = ok.get("linear-probe")
    if full and probe:
        gap, frac = 100 * (full["accuracy"] - probe["accuracy"]), probe["wall_s"] / full["wall_s"]
        out.append({"name": f"linear-probe within {TARGETS['probe_points']:g} points of full at < 1/10 of its wall",
                    "detail": f"accuracy {probe['accuracy']:.3f} vs {full['accuracy']:.3f} (full {gap:+.1f} points ahead); wall {probe['wall_s']:.1f} s vs {full['wall_s']:.1f} s ({frac:.2f}x)",
                    "pass": gap <= TARGETS["probe_points"] and frac < TARGETS["probe_wall_fraction"]})  # fmt: skip
    if full and peak_gflops and full.get("nonembedding_parameters"):
        g = 6 * full["nonembedding_parameters"] * full["train_tokens"] / full["train_s"] / 1e9
        pct = 100 * g / peak_gflops
        out.append({"name": f"full's training FLOP/s > {TARGETS['flops_percent']:g}% of the fp32 matmul peak",
                    "detail": f"6 x {full['nonembedding_parameters']:,} x {full['train_tokens']:,} tokens / {full['train_s']:.1f} s = {g:.1f} GFLOP/s = {pct:.1f}% of {peak_gflops:.1f}",
                    "pass": pct > TARGETS["flops_percent"], "gflops": round(g, 2), "percent_of_peak": round(pct, 1)})  # fmt: skip
    for key, r in runs.items():
        if "error" in r:
            out.append({"name": f"{key} runs", "detail": r["error"], "pass": False})
    return out


# ---------------------------------------------------------------------------------------- report

COLUMNS = ("strategy", "settings", "epochs", "test acc", "macro-F1", "wall s", "train s", "trainable params",
           "peak RSS MiB", "load 1m / other cores")  # fmt: skip


def rows(runs: dict, specs: dict) -> list[list[str]]:
    out = []
    for key, r in runs.items():
        spec = specs.get(key, {})
        epochs = "n/a" if spec.get("epochs") is None else f"{spec['epochs']:g}"
        load = r.get("machine_during_run", {})
        loadcell = f"{r.get('machine_before_run', {}).get('load_average_1m', float('nan')):.2f} / {load.get('other_cpu_cores', float('nan')):.2f}"  # fmt: skip
        if "error" in r:
            out.append([key, spec.get("note", ""), epochs, "FAILED", "-", "-", "-", "-", "-", loadcell])
            continue
        share = 100 * r["trainable_parameters"] / r["total_parameters"]
        out.append([key, spec.get("note", ""), epochs, f"{r['accuracy']:.3f}", f"{r['f1_macro']:.3f}",
                    f"{r['wall_s']:.1f}", f"{r['train_s']:.1f}", f"{r['trainable_parameters']:,} ({share:.0f}%)" if share >= 1 else f"{r['trainable_parameters']:,} ({share:.2g}%)",
                    f"{r['peak_rss_mib']:.0f}", loadcell])  # fmt: skip
    return out


def title(result: dict, dataset: str) -> str:
    s, runs = result["settings"], result["datasets"][dataset]
    rows_ = next((r.get("test_rows") for r in runs.values() if r.get("test_rows")), None)
    test = f"{rows_} test rows" if rows_ else f"test capped at {s['max_eval']}"
    return f"{dataset}, MiniLM-L6: {s['train_size']} training texts, {test}, {s['epochs']:g} epochs, batch {BATCH_SIZE}, lr {LEARNING_RATE:g}"  # fmt: skip


def markdown(result: dict) -> str:
    m, mm = result["machine"], result.get("matmul") or {}
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads), "
             f"torch {m['torch']}, transformers {m['transformers']}; fp32 matmul peak {mm.get('peak_gflops', float('nan')):.1f} GFLOP/s. "
             "Each run is a fresh process; `load 1m` is the 1-minute load average before it started, "
             "`other cores` the CPU other processes used while it ran (before each run the script waited while "
             "bench_core.py ran or the load average was above 2.5 with other jobs using half a core or more). "
             "Wall time is the whole `transferkit.fit` call, imports excluded "
             "(data, model, training, validation after each epoch, test, saving the run folder); train s is the "
             "training loop without its validation passes. `linear-probe`'s and `lp-ft`'s wall time includes the "
             "pass that computes the frozen features; `top-k`'s cache of the frozen bottom is built before training, "
             "so it counts in wall s, not in train s.", ""]  # fmt: skip
    states = sorted({f"{r['src']['commit']}" + (f" + uncommitted src/ changes {r['src']['src_diff_sha1']}" if r["src"]["src_files_changed"] else "")
                     for runs in result["datasets"].values() for r in runs.values() if "src" in r})  # fmt: skip
    lines += [f"transferkit: {'; '.join(states) or 'unknown'}" + (" (src/ changed between runs)" if len(states) > 1 else ""), ""]  # fmt: skip
    for dataset, runs in result["datasets"].items():
        lines += [f"**{title(result, dataset)}**", "", "| " + " | ".join(COLUMNS) + " |",
                  "|" + "|".join("---" if c in ("strategy", "settings") else "---:" for c in COLUMNS) + "|"]  # fmt: skip
        lines += ["| " + " | ".join(r) + " |" for r in rows(runs, result["specs"])]
        lines += [""] + [f"- **{'PASS' if c['pass'] else 'FAIL'}** {c['name']}: {c['detail']}" for c in result["checks"][dataset]] + [""]  # fmt: skip
    return "\n".join(lines)


def report(result: dict, console) -> None:
    from rich.table import Table

    mm = result.get("matmul") or {}
    if mm.get("gflops_by_shape"):
        shapes = ", ".join(f"{k} {v:.1f}" for k, v in mm["gflops_by_shape"].items())
        console.print(
            f"fp32 matmul peak, {mm['threads']} threads: {mm['peak_gflops']:.1f} GFLOP/s ({shapes})"
        )
    for dataset, runs in result["datasets"].items():
        t = Table(title=title(result, dataset))
        for col in COLUMNS:
            t.add_column(col, justify="left" if col in ("strategy", "settings") else "right")
        for r in rows(runs, result["specs"]):
            t.add_row(*[f"[red]{c}[/red]" if c == "FAILED" else c for c in r])
        console.print(t)
        for c in result["checks"][dataset]:
            verdict = "[green]PASS[/green]" if c["pass"] else "[red]FAIL[/red]"
            console.print(f"{verdict} {dataset}: {c['name']}: {c['detail']}")
        for key, r in runs.items():
            if "error" in r:
                console.print(f"[red]{dataset} {key} FAILED[/red]: {r['error']}")


# -------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--datasets", nargs="+", default=["rotten_tomatoes", "vader_tweets"], help="catalog data sets"
    )
    ap.add_argument(
        "--train-size", type=int, help="training texts, a stratified subsample (default 2000; --quick 200)"
    )
    ap.add_argument(
        "--epochs", type=float, help="epochs of every trained strategy but head (default 2; --quick 1)"
    )
    ap.add_argument("--strategies", nargs="+", help="strategies to run (default: every registered one)")
    ap.add_argument(
        "--seed", type=int, default=42, help="seed of the subsample, the weights and the data order"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: train size 200, 1 epoch, {MAX_EVAL_QUICK} validation and test rows",
    )
    ap.add_argument("--output", type=Path, help="results JSON (default benchmarks/results/strategies[-quick].json); the markdown goes beside it (.md)")  # fmt: skip
    ap.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    ap.add_argument("--report", type=Path, help="only render an existing results JSON")
    ap.add_argument("--max-load", type=float, default=2.5, help="wait before a run while the 1-minute load average is above this")  # fmt: skip
    ap.add_argument("--max-wait", type=float, default=900, help="longest wait before one run, seconds")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-spec", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.train_size = args.train_size or (200 if args.quick else 2000)
    args.epochs = args.epochs or (1 if args.quick else 2)
    args.max_eval = MAX_EVAL_QUICK if args.quick else MAX_EVAL
    return args


def run_all(args, console, output: Path) -> dict:
    names = args.strategies or strategy_names()
    unknown = sorted(set(names) - set(strategy_names()))
    if unknown:
        raise SystemExit(f"unknown strategies: {', '.join(unknown)}; known: {', '.join(strategy_names())}")
    specs = {s["key"]: s for s in plan_runs(names, args.epochs)}
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith(("worker", "report"))}  # fmt: skip
    result = {"machine": common.machine(), "settings": settings, "specs": specs, "matmul": None,
              "datasets": {d: {} for d in args.datasets}, "checks": {}}  # fmt: skip
    console.print(f"[bold]bench_strategies[/bold] {len(specs)} runs x {len(args.datasets)} data sets: {result['machine']['cpu']}, {result['machine']['date']}")  # fmt: skip

    def one(name: str, spec: dict) -> dict:
        before = wait_turn(args.max_load, args.max_wait, console.print)
        state = src_state()
        run = common.run_worker(SCRIPT, name, ["--worker-spec", json.dumps(spec)])
        run |= {"machine_before_run": before, "src": state}
        took = run["machine_during_run"]["process_seconds"]
        console.print(f"  {name}: {run.get('error', f'{took:.0f} s')} (load {before['load_average_1m']:.2f}, other cores {run['machine_during_run']['other_cpu_cores']:.2f})")  # fmt: skip
        return run

    result["matmul"] = one("matmul", {"quick": args.quick})
    for dataset in args.datasets:
        for key, spec in specs.items():
            job = spec | {
                "dataset": dataset,
                "train_size": args.train_size,
                "max_eval": args.max_eval,
                "seed": args.seed,
            }
            result["datasets"][dataset][key] = one(f"{dataset}/{key}", job)
            output.write_text(json.dumps(result, indent=2, default=float))  # partial results survive a crash
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:  # inside a fresh process: one run, its figures and its own peak RSS
        spec = json.loads(args.worker_spec)
        out = worker_matmul(spec) if args.worker == "matmul" else worker(spec)
        args.worker_out.write_text(
            json.dumps(out | {"peak_rss_mib": round(common.peak_rss_mib(), 1)}, default=float)
        )
        return 0
    from rich.console import Console

    console = Console(width=220)
    output = args.report or args.output or common.RESULTS / f"strategies{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    result = json.loads(output.read_text()) if args.report else run_all(args, console, output)
    peak = (result.get("matmul") or {}).get("peak_gflops")
    result["checks"] = {d: checks(runs, peak) for d, runs in result["datasets"].items()}
    report(result, console)
    md = markdown(result)
    output.write_text(json.dumps(result, indent=2, default=float))
    output.with_suffix(".md").write_text(md + "\n")
    if args.markdown:
        print(md)
    console.print(f"results: {output} and {output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
