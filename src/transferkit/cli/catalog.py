"""Listing commands: ``transferkit tasks``, ``backbones``, ``strategies`` and ``datasets`` (list or fetch).

Each registry is imported inside its command so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations

from transferkit.cli.common import _print, _table
from transferkit.errors import TransferkitError


def add_parsers(sub) -> None:
    sub.add_parser("tasks", help="list tasks (--task NAME)")
    sub.add_parser("backbones", help="list registered backbones")
    sub.add_parser("strategies", help="list transfer strategies and their settings")
    p = sub.add_parser("datasets", help="list or fetch catalog data sets")
    p.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    p.add_argument("names", nargs="*", help="data sets to fetch")
    p.add_argument("--all", action="store_true", help="fetch every catalog data set")


def cmd_tasks(args) -> int:
    from transferkit.tasks import TASKS

    rows = [(e.name, e.description) for e in TASKS]
    _print(_table("tasks (--task NAME or task.type)", rows, ("name", "description")))
    return 0


def cmd_backbones(args) -> int:
    from transferkit.backbones import BACKBONES

    rows = [(e.name, e.description) for e in BACKBONES]
    _print(_table("backbones (or any Hugging Face model id / local folder)", rows, ("name", "description")))
    return 0


def cmd_strategies(args) -> int:
    from transferkit.strategies import STRATEGIES

    rows = []
    for e in STRATEGIES:
        fields = e.obj.settings.model_fields
        settings = ", ".join(f"{n}={f.default!r}" for n, f in fields.items()) or "-"
        rows.append((e.name, e.description, settings))
    _print(
        _table(
            "transfer strategies (--strategy NAME; settings as strategy.KEY=VALUE)",
            rows,
            ("name", "description", "settings"),
        )
    )
    return 0


def cmd_datasets(args) -> int:
    from transferkit.data import DATASETS, fetch_dataset

    if args.action == "fetch":
        names = DATASETS.names() if args.all else args.names
        if not names:
            raise TransferkitError("datasets fetch: name data sets or give --all")
        for name in names:
            DATASETS.get(name)  # clear error for an unknown name
            print(f"{name}: {fetch_dataset(name)}")
        return 0
    rows = [(e.name, e.description) for e in DATASETS]
    _print(_table("catalog data sets (--dataset NAME)", rows, ("name", "description")))
    return 0
