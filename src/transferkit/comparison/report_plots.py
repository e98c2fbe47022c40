"""The PNG plots of a compare report, in the house style of :mod:`transferkit.evaluation.plots` (Agg,
object-oriented figures, atomic writes): data-efficiency curves, time vs metric with the Pareto front,
transfer gains with their intervals, and the best cell's confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferkit.evaluation.plots import _new_figure, _save_png, save_confusion_matrix

if TYPE_CHECKING:
    from transferkit.comparison.results import Grid

PLOTS_DIR = "plots"
PLOT_FILES = {
    "curves": "curves.png",
    "time": "time_vs_metric.png",
    "gains": "gains.png",
    "confusion": "confusion_matrix.png",
}
_BASELINE_STYLE = {"scratch": "--", "classical": ":", "majority": "-."}


def _kind(grid: Grid, name: str) -> str:
    return next((c.get("kind", "transfer") for c in grid.cells if c["strategy"] == name), "transfer")


def _x_label(grid: Grid) -> str:
    return "labelled examples per class (log)" if grid.unit == "per class" else f"labelled {grid.unit} (log)"


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=ax.transAxes, color="grey")


def draw_curves(grid: Grid, curves: dict[str, list[dict]], path: Path) -> Path:
    """Main metric vs labelled examples (log x, "all" at its real size), mean +/- std band over seeds."""
    fig = _new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    for name, points in curves.items():
        points = [p for p in points if p["size"] not in (0, float("inf"))]
        if not points:
            continue
        xs = [p["size"] for p in points]
        ys = [p["mean"] for p in points]
        (line,) = ax.plot(
            xs, ys, marker="o", linestyle=_BASELINE_STYLE.get(_kind(grid, name), "-"), label=name
        )
        if any(p["std"] is not None for p in points):
            std = [p["std"] or 0.0 for p in points]
            lo = [y - s for y, s in zip(ys, std, strict=True)]
            hi = [y + s for y, s in zip(ys, std, strict=True)]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    if ax.get_legend_handles_labels()[0]:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        sizes = sorted(
            {p["size"] for pts in curves.values() for p in pts if p["size"] not in (0, float("inf"))}
        )
        ax.set_xticks(sizes, labels=[f"{x:g}" for x in sizes])  # the budgets themselves, not powers of ten
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend()
    else:
        _no_data(ax)
    ax.set_xlabel(_x_label(grid))
    ax.set_ylabel(f"test {grid.metric}" + ("" if grid.higher else " (lower is better)"))
    ax.set_title("Data efficiency")
    ax.grid(True, alpha=0.3)
    return _save_png(fig, path)


def draw_time(grid: Grid, front: list[str], path: Path) -> Path:
    """Test metric vs wall time per done cell, the Pareto front (faster and better) joined by a line."""
    fig = _new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    timed = [
        c for c in grid.done if isinstance(c.get("wall_seconds"), (int, float)) and c["wall_seconds"] > 0
    ]
    for name in grid.names():
        cells = [c for c in timed if c["strategy"] == name]
        if cells:
            ax.scatter([c["wall_seconds"] for c in cells], [c["test"] for c in cells], label=name, alpha=0.8)
    on_front = sorted((c for c in timed if c.get("id") in front), key=lambda c: c["wall_seconds"])
    if on_front:
        ax.plot(
            [c["wall_seconds"] for c in on_front],
            [c["test"] for c in on_front],
            color="black",
            linewidth=1,
            drawstyle="steps-post",
            label="Pareto front",
        )
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    else:
        _no_data(ax)
    ax.set_xlabel("wall time per cell, seconds (log)")
    ax.set_ylabel(f"test {grid.metric}")
    ax.set_title("Time vs metric")
    ax.grid(True, alpha=0.3)
    return _save_png(fig, path)


def draw_gains(grid: Grid, gain_rows: list[dict], path: Path) -> Path:
    """Best transfer strategy minus scratch and minus the classical baseline per budget, with 95% CIs."""
    fig = _new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    labels = [str(r["budget"]) for r in gain_rows]
    for offset, kind in ((-0.1, "scratch"), (0.1, "classical")):
        xs, ys, err = [], [], [[], []]
        for i, row in enumerate(gain_rows):
            g = row["vs"].get(kind)
            if g is None:
                continue
            xs.append(i + offset)
            ys.append(g["estimate"])
            err[0].append(g["estimate"] - g["low"] if g["low"] is not None else 0.0)
            err[1].append(g["high"] - g["estimate"] if g["high"] is not None else 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=4, label=f"best transfer - {kind}")
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_xticks(range(len(labels)), labels=labels)
    ax.set_xlabel(f"label budget ({grid.unit})")
    ax.set_ylabel(f"difference in test {grid.metric}")
    ax.set_title("Transfer gain (95% bootstrap CI)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        _no_data(ax)
    ax.grid(True, alpha=0.3)
    return _save_png(fig, path)


def draw_all(grid: Grid, summary: dict, best: dict | None) -> dict[str, Path]:
    """Writes every plot that has data into ``folder/plots/``; removes a plot of an earlier run that has none."""
    folder = grid.folder / PLOTS_DIR
    written = {
        "curves": draw_curves(grid, summary["curves"], folder / PLOT_FILES["curves"]),
        "time": draw_time(grid, summary["pareto"], folder / PLOT_FILES["time"]),
    }
    if summary["gains"]:
        written["gains"] = draw_gains(grid, summary["gains"], folder / PLOT_FILES["gains"])
    cm = ((best or {}).get("test_metrics") or {}).get("confusion_matrix")
    if isinstance(cm, dict) and cm.get("labels"):
        title = f"Confusion matrix: {best.get('id', best['strategy'])} (test)"
        written["confusion"] = save_confusion_matrix(cm, folder / PLOT_FILES["confusion"], title=title)
    for name, file in PLOT_FILES.items():
        if name not in written:
            (folder / file).unlink(missing_ok=True)
    return written
