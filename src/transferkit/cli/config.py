"""``transferkit config explain``: every run configuration field with its default and description.

The configuration and the strategy registry are imported inside ``cmd_config`` so that ``transferkit --help``
does not load torch.
"""

from __future__ import annotations

from transferkit.cli.common import _print, _table


def add_parsers(sub) -> None:
    p = sub.add_parser("config", help="explain every config field")
    p.add_argument("action", choices=["explain"])


def cmd_config(args) -> int:
    from transferkit.config import explain
    from transferkit.strategies import STRATEGIES

    rows = [(path, default, desc) for path, default, desc in explain()]
    for e in STRATEGIES:
        for name, f in e.obj.settings.model_fields.items():
            rows.append((f"strategy.{name}  [{e.name}]", repr(f.default), f.description or ""))
    _print(
        _table(
            "run configuration fields (YAML keys; override with KEY=VALUE)",
            rows,
            ("field", "default", "description"),
        )
    )
    return 0
