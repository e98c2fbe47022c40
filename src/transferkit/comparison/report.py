"""The report of a ``transferkit compare`` folder: what transfer bought at each label budget, read from
``results.json`` and the cells' saved test predictions.

:func:`build_report` analyses the grid (curves over budgets, transfer gains with bootstrap intervals, labels
needed to reach scratch's best, the Pareto front of time and metric), draws the plots
(:mod:`~transferkit.comparison.report_plots`) and writes ``report.html`` (one self-contained file) and
``report.md`` with ``plots/`` (:mod:`~transferkit.comparison.report_render`). Partial grids are fine: pending
and failed cells are listed, missing arms are said to be missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transferkit.comparison import report_plots, report_render, stats
from transferkit.comparison.results import Grid, _mean_std, _number, load_results


# ------------------------------------------------------------------------------------------------ analysis
def curves(grid: Grid) -> dict[str, list[dict]]:
    """Per strategy and baseline: mean +/- std of the test metric over seeds at each budget (done cells)."""
    out: dict[str, list[dict]] = {}
    for name in grid.names():
        points = []
        for budget in grid.budgets():
            cells = grid.arm(name, budget)
            if cells:
                mean, std = _mean_std([c["test"] for c in cells])
                points.append(
                    {
                        "budget": budget,
                        "size": grid.size(budget),
                        "mean": mean,
                        "std": std,
                        "seeds": len(cells),
                    }
                )
        if points:
            out[name] = points
    return out


def best_transfer(grid: Grid, budget: Any) -> tuple[str, str] | None:
    """(strategy, what chose it): the transfer strategy with the best mean validation metric at ``budget``."""
    ranked = []
    for name in grid.names("transfer"):
        by_val = grid.mean_std(name, budget, "validation")
        by_test = grid.mean_std(name, budget, "test")
        if by_test:
            ranked.append((name, by_val[0] if by_val else None, by_test[0]))
    if not ranked:
        return None
    if all(v is not None for _, v, _ in ranked):
        key = 1
        chosen_by = "validation"
    else:  # a strategy without validation scores: rank on test, and say so
        key = 2
        chosen_by = "test (validation missing)"
    best = max(ranked, key=lambda r: r[key] if grid.higher else -r[key])
    return best[0], chosen_by


def gain(grid: Grid, strategy: str, baseline: str, budget: Any, n_boot: int = 1000) -> stats.Gain | None:
    """``strategy`` minus ``baseline`` at ``budget``: paired bootstrap over seeds and test examples, or over
    seeds only when a cell's predictions are missing (or the metric cannot be recomputed from them)."""
    a, b = grid.arm(strategy, budget), grid.arm(baseline, budget)
    if not a or not b:
        return None
    paired = [c.get("seed") for c in a] == [c.get("seed") for c in b]  # seed i of both: the same data subset
    if grid.metric in stats.METRICS:
        preds = [grid.predictions(c) for c in a + b]
        unsaved = [c.get("id", c["strategy"]) for c in a + b if not c.get("predictions")]
        if unsaved:
            grid.notes.append(
                f"no saved test predictions for {', '.join(unsaved)}: their gains resample seeds only"
            )
        if all(p is not None for p in preds):
            try:
                return stats.paired_bootstrap_gain(
                    grid.metric,
                    preds[0].get("y_true"),
                    [p["y_pred"] for p in preds[: len(a)]],
                    [p["y_pred"] for p in preds[len(a) :]],
                    n_boot=n_boot,
                    paired=paired,
                )
            except ValueError as e:
                grid.notes.append(
                    f"{strategy} vs {baseline} at {budget}: predictions unusable ({e}); seeds only"
                )
    else:
        grid.notes.append(f"{grid.metric} cannot be recomputed from predictions: gains resample seeds only")
    return stats.bootstrap_gain_from_scores(
        [c["test"] for c in a], [c["test"] for c in b], n_boot=n_boot, paired=paired
    )


def _warning(grid: Grid, g: stats.Gain) -> str | None:
    """Negative transfer: the interval entirely on the worse side; or the mean on it."""
    sign = 1 if grid.higher else -1
    if g.high is not None and g.low is not None and sign * (g.high if grid.higher else g.low) < 0:
        return "negative transfer"
    if sign * g.estimate < 0:
        return "transfer not better than scratch"
    return None


def gains(grid: Grid, n_boot: int = 1000) -> list[dict]:
    """At each budget: the best transfer strategy minus scratch and minus the classical baseline."""
    scratch = next(iter(grid.names("scratch")), None)
    classical = grid.plan.get("classical") or next(iter(grid.names("classical")), None)
    rows = []
    for budget in grid.budgets():
        chosen = best_transfer(grid, budget)
        if chosen is None:
            continue
        strategy, chosen_by = chosen
        mean, std = grid.mean_std(strategy, budget) or (float("nan"), None)
        row = {
            "budget": budget,
            "label": grid.budget_label(budget),
            "strategy": strategy,
            "chosen_by": chosen_by,
        }
        row.update({"mean": mean, "std": std, "vs": {}})
        for kind, name in (("scratch", scratch), ("classical", classical)):
            g = gain(grid, strategy, name, budget, n_boot) if name else None
            if g is None:
                row["vs"][kind] = None
                continue
            entry = {"baseline": name, **g.__dict__, "n_seeds": list(g.n_seeds)}
            entry["warning"] = _warning(grid, g) if kind == "scratch" else None
            row["vs"][kind] = entry
        rows.append(row)
    return rows


def labels_to_reach(grid: Grid) -> dict:
    """X = the best scratch mean at the largest budget; per strategy the smallest budget whose mean reaches X."""
    budgets = grid.budgets()
    target = None
    for budget in reversed(budgets):
        means = [m[0] for n in grid.names("scratch") if (m := grid.mean_std(n, budget))]
        if means:
            target = {"value": max(means) if grid.higher else min(means), "budget": budget}
            break
    out: dict[str, Any] = {"target": target, "strategies": {}}
    if target is None:
        return out
    target["label"] = grid.budget_label(target["budget"])
    for name in [*grid.names("transfer"), *grid.names("classical")]:
        reached = next(
            (b for b in budgets if (m := grid.mean_std(name, b)) and grid.reaches(m[0], target["value"])),
            None,
        )
        out["strategies"][name] = (
            {"budget": reached, "label": grid.budget_label(reached)} if reached is not None else None
        )
    return out


def pareto_front(grid: Grid) -> list[str]:
    """Ids of the done cells no other cell beats on both wall time (lower) and test metric."""
    timed = [c for c in grid.done if _number(c.get("wall_seconds"))]
    front = []
    for c in timed:
        dominated = any(
            o is not c
            and o["wall_seconds"] <= c["wall_seconds"]
            and not grid.better(c["test"], o["test"])
            and (o["wall_seconds"] < c["wall_seconds"] or grid.better(o["test"], c["test"]))
            for o in timed
        )
        if not dominated:
            front.append(c.get("id", c["strategy"]))
    return front


def best_cell(grid: Grid) -> dict | None:
    """The done cell with the best validation metric (test where no validation score was saved)."""
    if not grid.done:
        return None
    key = "validation" if all(_number(c.get("validation")) for c in grid.done) else "test"
    return max(grid.done, key=lambda c: c[key] if grid.higher else -c[key])


def build_report(dir: Path, n_boot: int = 1000) -> dict:  # `dir`: the name the compare contract uses
    """Analyses a compare folder and writes ``report.html``, ``report.md`` and ``plots/*.png`` into it.

    Args:
        dir: A ``transferkit compare`` folder (with ``results.json``).
        n_boot: Bootstrap replicates for each gain's interval.

    Returns:
        The summary: ``html``, ``markdown`` (paths), ``plots`` ({name: path}), ``metric``,
        ``higher_is_better``, ``counts`` (cells per status), ``curves``, ``gains``, ``labels_to_reach``,
        ``pareto``, ``best_cell`` (id), ``warnings`` (negative transfer per budget), ``notes``, ``verdict``.

    Raises:
        RunError: If ``results.json`` is missing or corrupt.
        ValueError: If ``n_boot`` is below 1.

    Example:
        >>> summary = build_report(Path("compare-rt"))  # doctest: +SKIP
        >>> print(summary["verdict"])  # doctest: +SKIP
    """

    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    folder = Path(dir)
    results = load_results(folder)
    grid = Grid(folder, results)
    gain_rows = gains(grid, n_boot)
    reach = labels_to_reach(grid)
    best = best_cell(grid)
    counts: dict[str, int] = {}
    for c in grid.cells:
        counts[c.get("status", "unknown")] = counts.get(c.get("status", "unknown"), 0) + 1
    summary = {
        "folder": str(folder),
        "metric": grid.metric,
        "higher_is_better": grid.higher,
        "counts": counts,
        "curves": curves(grid),
        "gains": gain_rows,
        "labels_to_reach": reach,
        "pareto": pareto_front(grid),
        "best_cell": best.get("id") if best else None,
        "warnings": [
            f"{r['label']}: {r['strategy']} vs {r['vs']['scratch']['baseline']}: {r['vs']['scratch']['warning']}"
            for r in gain_rows
            if r["vs"].get("scratch") and r["vs"]["scratch"]["warning"]
        ],
        "verdict": report_render.verdict(grid, gain_rows, reach),
    }
    summary["plots"] = {k: str(v) for k, v in report_plots.draw_all(grid, summary, best).items()}
    summary["notes"] = list(dict.fromkeys(grid.notes))
    html_path, md_path = report_render.write(grid, results, summary, best)
    summary.update(html=str(html_path), markdown=str(md_path))
    return summary


def summary_text(summary: Mapping[str, Any]) -> str:
    """A few lines for a terminal: the verdict, the warnings, where the report is (``compare`` prints this)."""
    lines = [summary["verdict"], *(f"WARNING: {w}" for w in summary["warnings"])]
    if summary.get("html"):
        lines.append(f"report: {summary['html']} (markdown: {summary['markdown']})")
    return "\n".join(lines)
