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
    """Prints a rich table; when output is not a terminal (a log, a pipe, CI) at the table's natural width,
    so no column is cut to "precision_m…" by rich's default 80 columns."""
    from rich.console import Console  # inside: keeps `transferkit --help` fast
    from rich.measure import Measurement

    console = Console()
    if not console.is_terminal:
        natural = Measurement.get(console, console.options.update_width(10_000), obj).maximum
        console = Console(width=max(40, natural), soft_wrap=False)
    console.print(obj)
