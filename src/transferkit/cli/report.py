"""``transferkit report DIR``: rebuilds report.html / report.md of a ``transferkit compare`` folder.

The library is imported inside ``cmd_report`` so that ``transferkit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.errors import TransferkitError


def add_parsers(sub) -> None:
    p = sub.add_parser("report", help="rebuild the report of a compare folder (report.html, report.md)")
    p.add_argument("dir", help="a `transferkit compare` folder (with results.json)")
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap replicates per gain (default: 1000)"
    )


def cmd_report(args) -> int:
    from transferkit.comparison.report import build_report, summary_text

    if args.bootstrap < 1:
        raise TransferkitError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    summary = build_report(Path(args.dir), n_boot=args.bootstrap)
    print(summary_text(summary) if not args.quiet else f"report: {summary['html']}")
    return 0
