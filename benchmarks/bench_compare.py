"""What the transfer bought, measured: ``transferkit compare`` over the issue's grid.

For each data set: strategies linear-probe, head, lp-ft, lora, full beside scratch (MiniLM / EfficientNet
architecture from random init, same loop), the classical baseline (TF-IDF + LR for text, pixels + LR for
images) and the majority class, at 8 / 32 / 128 / all labelled examples per class, 3 seeds. Validation and
test are seeded samples of the catalog's splits (``--max-eval`` rows each), the same for every cell.

Prints the machine (CPU model, ISA), each grid's wall time, what the shared frozen-feature pass computed and
reused and the time it saved against running each cell on its own (each cell would have recomputed its
features: reused examples x measured seconds per example), and "which strategy at which budget".
Every compare folder (``--output``/<dataset>) is resumable: rerun the same command to continue one.
``--markdown`` prints the README table from the folders.

The issue's target: the 8 / 32 / 128 part of the text grid for one data set (every strategy, 3 seeds)
finishes in under 30 minutes on 2 CPU cores.

Usage:
    python benchmarks/bench_compare.py --datasets rotten_tomatoes --budgets 8,32,128
    python benchmarks/bench_compare.py --datasets rotten_tomatoes vader_tweets mnist5k --budgets 8,32,128,all
    python benchmarks/bench_compare.py --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine  # noqa: E402

IMAGES = {"mnist5k", "digits"}
STRATEGIES = "linear-probe,head,lp-ft,lora,full"


def settings(dataset: str, max_eval: int) -> dict:
    common = [f"data.max_eval_samples={max_eval}", "output.tensorboard=false", "training.progress=false"]
    if dataset in IMAGES:
        return {"task": "image-classification", "overrides": [*common, "image.image_size=96"]}
    return {"task": None, "overrides": [*common, "backbone.max_length=128"]}


def run(args) -> None:
    import transferkit

    m = machine()
    print(f"machine: {m.get('cpu')} | ISA {m.get('isa')} | {m.get('cores')} cores | {m.get('date')}")
    total = time.perf_counter()
    for dataset in args.datasets:
        folder = Path(args.output) / dataset
        s = settings(dataset, args.max_eval)
        t0 = time.perf_counter()
        if (folder / "plan.json").is_file():
            res = transferkit.compare(resume=folder, time_budget=args.time_budget, progress=False)
        else:
            res = transferkit.compare(
                dataset=dataset, task=s["task"], strategies=args.strategies, budgets=args.budgets,
                seeds=args.seeds, seeds_at_all=args.seeds_at_all, output=folder, overrides=s["overrides"], time_budget=args.time_budget,
                progress=False,
            )  # fmt: skip
        print(summary(res.dir, time.perf_counter() - t0))
    print(f"all grids: {time.perf_counter() - total:.0f} s")


def summary(folder: Path, wall: float | None = None) -> str:
    r = json.loads((folder / "results.json").read_text())
    p, f = r["plan"], r.get("features") or {}
    cells = r["cells"]
    done = [c for c in cells if c["status"] == "done"]
    lines = [
        f"{p['dataset']}: {len(done)}/{len(cells)} cells, cell time {r['wall_seconds'] / 60:.1f} min"
        + (f" (this call {wall / 60:.1f} min)" if wall is not None else "")
        + f"; cpu {p['cpu']}",
        f"  shared feature pass: {f.get('computed', 0)} examples computed, {f.get('reused', 0)} reused, "
        f"{f.get('seconds', 0):.0f} s spent, ~{f.get('saved_seconds', 0):.0f} s saved vs each cell on its own",
    ]
    for budget in p["budgets"]:
        part = [c for c in done if c["budget"] == budget]
        lines.append(
            f"  budget {budget}: "
            + ", ".join(_means(part))
            + f"; {sum(c['wall_seconds'] for c in part) / 60:.1f} min"
        )
    verdict = (folder / "report.md").read_text().split("\n\n")[1] if (folder / "report.md").is_file() else ""
    return "\n".join([*lines, "  " + verdict.strip()])


def _means(cells: list[dict]) -> list[str]:
    import numpy as np

    by: dict[str, list[float]] = {}
    for c in cells:
        by.setdefault(c["strategy"], []).append(c["test"])
    ranked = sorted(by.items(), key=lambda kv: -float(np.mean(kv[1])))
    return [f"{k} {np.mean(v):.3f}" + (f"±{np.std(v):.3f}" if len(v) > 1 else "") for k, v in ranked]


def markdown(root: Path) -> str:
    import numpy as np

    out = []
    for folder in sorted(p.parent for p in root.glob("*/results.json")):
        r = json.loads((folder / "results.json").read_text())
        p = r["plan"]
        done = [c for c in r["cells"] if c["status"] == "done"]
        arms = list(
            dict.fromkeys([*p["strategies"], "scratch", *(b for b in p["baselines"] if b != "scratch")])
        )
        out.append(f"**{p['dataset']}** ({p['metric']}, test, mean ± std over seeds; {len(done)}/{len(r['cells'])} cells, "
                   f"{r['wall_seconds'] / 60:.0f} min of cells; features: {r['features'].get('reused', 0)} reused, "
                   f"~{r['features'].get('saved_seconds', 0):.0f} s saved)\n")  # fmt: skip
        out.append("| budget | " + " | ".join(arms) + " | minutes |")
        out.append("|---|" + "---|" * (len(arms) + 1))
        for budget in p["budgets"]:
            part = [c for c in done if c["budget"] == budget]
            row = []
            for a in arms:
                v = [c["test"] for c in part if c["strategy"] == a]
                row.append(f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "") if v else "–")
            best = max((np.mean([c["test"] for c in part if c["strategy"] == s]), s) for s in p["strategies"]
                       if any(c["strategy"] == s for c in part)) if part else (0, "")  # fmt: skip
            row = [f"**{x}**" if a == best[1] else x for a, x in zip(arms, row, strict=True)]
            out.append(
                f"| {budget} | " + " | ".join(row) + f" | {sum(c['wall_seconds'] for c in part) / 60:.1f} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["rotten_tomatoes", "vader_tweets", "mnist5k"])
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--budgets", default="8,32,128,all")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seeds-at-all", type=int, default=1,
                    help="seeds of the trunk-training arms at the 'all' budget (the issue allows one)")  # fmt: skip
    ap.add_argument("--max-eval", type=int, default=500, help="validation and test rows (each)")
    ap.add_argument("--time-budget", help="per grid, e.g. 40m (the rest stays pending; rerun to continue)")
    ap.add_argument("--output", default=str(RESULTS / "compare"))
    ap.add_argument("--markdown", action="store_true", help="print the README table from --output")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(Path(args.output)))
        return
    run(args)


if __name__ == "__main__":
    main()
