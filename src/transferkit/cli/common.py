"""What several commands share: the token-run metric columns and rich table printing.

rich is imported inside the functions so that building the parser (``transferkit --help``) stays fast.
"""

from __future__ import annotations


def _table(title: str, rows: list[tuple], headers: tuple):
    from rich.table import Table  # inside: keeps `transferkit --help` fast

    t = Table(title=title, show_lines=False)
    for h in headers:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*map(str, r))
    return t


def _print(obj) -> None:
    from rich.console import Console  # inside: keeps `transferkit --help` fast

    Console().print(obj)
