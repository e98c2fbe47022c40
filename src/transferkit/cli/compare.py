"""``transferkit compare``: strategy x label budget x seed grids with baselines, and their report.

The library is imported inside ``cmd_compare`` so that ``transferkit --help`` stays fast.
"""

from __future__ import annotations


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="what the transfer bought: strategies x label budgets x seeds vs scratch and a classical baseline",
        description="Runs a grid of fine-tuning runs (each a normal run folder) beside training from scratch, "
        "a classical baseline and the majority class, and writes results.json/.csv, report.html and report.md.",
    )
    p.add_argument("--config", help="run YAML every cell starts from")
    p.add_argument("--dataset", help="catalog data set (see `transferkit datasets`)")
    p.add_argument("--task", help="task.type (see `transferkit tasks`)")
    p.add_argument("--backbone", help="backbone.name")
    p.add_argument("--strategies", help="comma-separated (default: linear-probe,head,lp-ft,lora,full)")
    p.add_argument(
        "--budgets",
        default="8,32,128,all",
        help="labelled examples per class (NER: sentences), nested draws; 'all' = every example",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per budget (default 3)")
    p.add_argument(
        "--seeds-at-all",
        type=int,
        metavar="N",
        help="at the 'all' budget, train the trunk (lp-ft, lora, full, scratch...) with only N seeds",
    )
    p.add_argument("--output", help="compare folder (default runs/compare-<dataset>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted compare folder")
    p.add_argument(
        "--time-budget", help="wall time for the grid, e.g. 45m; the rest stays pending (--resume)"
    )
    p.add_argument("overrides", nargs="*", help="key.path=value settings for every cell")


def cmd_compare(args) -> int:
    from transferkit.comparison.report import summary_text
    from transferkit.comparison.runner import compare

    res = compare(
        args.config, dataset=args.dataset, task=args.task, backbone=args.backbone, strategies=args.strategies,
        budgets=args.budgets, seeds=args.seeds, seeds_at_all=args.seeds_at_all, output=args.output, resume=args.resume,
        time_budget=args.time_budget, overrides=args.overrides, progress=not args.quiet,
    )  # fmt: skip
    cells = res.results["cells"]
    failed = [c for c in cells if c["status"] == "failed"]
    pending = [c for c in cells if c["status"] == "pending"]
    print(f"compare: {len(cells) - len(failed) - len(pending)}/{len(cells)} cells done in {res.dir}")
    for c in failed:
        print(f"  failed {c['id']}: {c['error']}")
    if pending:
        print(f"  {len(pending)} cells pending: continue with `transferkit compare --resume {res.dir}`")
    if res.results.get("summary"):
        print(summary_text(res.results["summary"]))
    return 0
