"""The words of a compare report: the verdict paragraph, and report.html / report.md rendered from one list
of blocks so the two never drift apart.

A block is ``("h2", title)``, ``("p", text)``, ``("warn", text)``, ``("table", headers, rows)`` or
``("img", plot name, path, caption)``. The HTML page is self-contained: inline CSS and the plots as base64
``data:`` PNGs, nothing fetched from anywhere; the Markdown links the PNGs in ``plots/`` beside it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferkit.utils.io import atomic_write_text

if TYPE_CHECKING:
    from transferkit.comparison.results import Grid

HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%}.warn{background:#fde8e8;border-left:4px solid #c00;padding:.5em 1em}
.verdict{font-size:1.05em;background:#eef5ff;padding:.7em 1em}"""


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f} +/- {std:.3f}" if std is not None else f"{value:.3f}"


def verdict(grid: Grid, gain_rows: list[dict], reach: dict) -> str:
    """One paragraph written from the numbers."""
    if not grid.done:
        return "No cell has finished yet: nothing to compare."
    sentences = []
    for row in gain_rows:
        s = (
            f"At {row['label']} {row['strategy']} is the best transfer strategy on {row['chosen_by']} "
            f"(test {_fmt(row['mean'], row['std'])})"
        )
        for kind in ("scratch", "classical"):
            g = row["vs"].get(kind)
            if g is None:
                continue
            side = "above" if g["estimate"] >= 0 else "below"
            ci = (
                f" [95% CI {g['low']:.3f}, {g['high']:.3f}]"
                if g["low"] is not None
                else " (no interval: one seed)"
            )
            s += f", {abs(g['estimate']):.3f} {side} {g['baseline']}{ci}"
            if g.get("warning"):
                s += f": {g['warning'].upper()}"
        sentences.append(s + ".")
    if all(row["vs"].get("scratch") is None for row in gain_rows):
        sentences.append("There is no finished scratch baseline to measure transfer against.")
    target = reach.get("target")
    if target:
        for name, hit in reach["strategies"].items():
            if name in grid.names("scratch"):
                continue
            if hit is None:
                sentences.append(
                    f"{name} does not reach scratch's best ({target['value']:.3f}) at any budget."
                )
            elif hit["budget"] != target["budget"]:
                sentences.append(
                    f"{name} reaches scratch's best with {hit['label']} instead of {target['label']}."
                )
    return " ".join(sentences)


def _plan_rows(grid: Grid, results: dict) -> list[tuple]:
    plan, features = grid.plan, results.get("features") or {}
    seeds = plan.get("seeds") or sorted({c.get("seed") for c in grid.cells if c.get("seed") is not None})
    rows = [
        ("task", plan.get("task")),
        ("data set", plan.get("dataset")),
        ("backbone", plan.get("backbone")),
        ("metric", f"{grid.metric} ({'higher' if grid.higher else 'lower'} is better)"),
        ("budgets", ", ".join(grid.budget_label(b) for b in grid.budgets())),
        (
            "seeds",
            ", ".join(map(str, seeds))
            + (
                f"; at 'all', the trunk-training arms ran {plan['seeds_at_all']}"
                if plan.get("seeds_at_all")
                else ""
            ),
        ),
        ("cpu", plan.get("cpu")),
        ("created", plan.get("created")),
        ("total wall time", f"{results['wall_seconds']:.1f} s" if results.get("wall_seconds") else None),
    ]
    if features:
        rows.append(
            (
                "features",
                f"{features.get('computed', 0)} computed, {features.get('reused', 0)} reused "
                f"({_f(features.get('seconds'), 1)} s; {_f(features.get('saved_seconds'), 1)} s saved)",
            )
        )
    return [(k, _f(v)) for k, v in rows]


def _gain_rows(summary: dict) -> list[tuple]:
    rows = []
    for r in summary["gains"]:
        cols = [
            r["label"],
            f"{r['strategy']} (by {r['chosen_by']})",
            _f(r["mean"]) + (f" +/- {_f(r['std'])}" if r["std"] is not None else ""),
        ]
        for kind in ("scratch", "classical"):
            g = r["vs"].get(kind)
            if g is None:
                cols.append("-")
                continue
            ci = f" [{_f(g['low'])}, {_f(g['high'])}]" if g["low"] is not None else " (no CI)"
            cols.append(
                f"{g['estimate']:+.3f}{ci} ({g['method']})"
                + (f" {g['warning'].upper()}" if g.get("warning") else "")
            )
        rows.append(tuple(cols))
    return rows


def _cost_rows(grid: Grid, front: list[str]) -> list[tuple]:
    rows = []
    for c in grid.cells:
        rows.append(
            (
                c.get("id", c["strategy"]),
                c.get("status"),
                _f(c.get("test")),
                _f(c.get("wall_seconds"), 1),
                _f(c.get("trainable_parameters")),
                _f(c.get("peak_rss_mb"), 0),
                "yes" if c.get("id") in front else "",
            )
        )
    return rows


def blocks(grid: Grid, results: dict, summary: dict, best: dict | None) -> list[tuple]:
    """The report's content, in order, for both renderers."""
    plan, plots = grid.plan, summary["plots"]
    out: list[tuple] = [("p", summary["verdict"])]
    out += [("warn", w) for w in summary["warnings"]]
    out += [("h2", "Plan"), ("table", ("", ""), _plan_rows(grid, results))]
    counts = ", ".join(f"{n} {status}" for status, n in summary["counts"].items())
    out += [("p", f"Cells: {counts}.")]
    out += [
        ("h2", "Data efficiency"),
        ("img", "curves", plots.get("curves"), "test metric vs labelled examples"),
    ]
    curve_rows = [
        (name, grid.budget_label(p["budget"]), f"{p['size']:.1f}", _f(p["mean"]), _f(p["std"]), p["seeds"])
        for name, points in summary["curves"].items()
        for p in points
    ]
    out.append(
        (
            "table",
            ("arm", "budget", "per class" if grid.unit == "per class" else grid.unit, "mean", "std", "seeds"),
            curve_rows,
        )
    )
    out += _gain_blocks(summary, plots, plan) + _reach_blocks(summary["labels_to_reach"])
    out += [
        ("h2", "Time, size and memory"),
        ("img", "time", plots.get("time"), "test metric vs wall time, Pareto front"),
    ]
    out.append(
        (
            "table",
            ("cell", "status", "test", "wall s", "trainable params", "peak RSS MB", "Pareto"),
            _cost_rows(grid, summary["pareto"]),
        )
    )
    return out + _best_blocks(best, plots) + _leftover_blocks(grid, plan, summary)


def _gain_blocks(summary: dict, plots: dict, plan: dict) -> list[tuple]:
    out: list[tuple] = []
    out += [("h2", "Transfer gain")]
    if summary["gains"]:
        if "gains" in plots:
            out.append(("img", "gains", plots["gains"], "best transfer minus baselines, 95% CI"))
        out.append(
            ("table", ("budget", "best transfer", "mean", "vs scratch", "vs classical"), _gain_rows(summary))
        )
    else:
        out.append(("p", "No finished transfer cells yet."))
    if plan.get("classical_note"):
        out.append(("p", f"Classical baseline: {plan['classical_note']}."))
    return out


def _reach_blocks(reach: dict) -> list[tuple]:
    out: list[tuple] = []
    out.append(("h2", "Labels needed to reach scratch's best"))
    if reach.get("target"):
        t = reach["target"]
        out.append(("p", f"Target: {t['value']:.3f}, the best scratch mean at {t['label']}."))
        out.append(
            (
                "table",
                ("arm", "reaches it with"),
                [(n, h["label"] if h else "not reached") for n, h in reach["strategies"].items()],
            )
        )
    else:
        out.append(("p", "No finished scratch cells: no target."))
    return out


def _best_blocks(best: dict | None, plots: dict) -> list[tuple]:
    out: list[tuple] = []
    if best is not None:
        out.append(("h2", f"Best cell: {best.get('id', best['strategy'])} (chosen by validation)"))
        if "confusion" in plots:
            out.append(("img", "confusion", plots["confusion"], "confusion matrix of the best cell"))
        per_type = (best.get("test_metrics") or {}).get("per_type")
        if isinstance(per_type, dict) and per_type:
            rows = [
                (t, _f(m.get("precision")), _f(m.get("recall")), _f(m.get("f1")), _f(m.get("support")))
                for t, m in per_type.items()
            ]
            out.append(("table", ("type", "precision", "recall", "F1", "support"), rows))
    return out


def _leftover_blocks(grid: Grid, plan: dict, summary: dict) -> list[tuple]:
    """Failed and pending cells, refused strategies, capped budgets, notes."""
    out: list[tuple] = []
    failed = [
        (c.get("id", c["strategy"]), c.get("error") or "no error saved")
        for c in grid.cells
        if c.get("status") == "failed"
    ]
    if failed:
        out += [("h2", "Failed cells"), ("table", ("cell", "error"), failed)]
    pending = [c.get("id", c["strategy"]) for c in grid.cells if c.get("status") not in ("done", "failed")]
    if pending:
        out += [("h2", "Pending cells"), ("p", ", ".join(pending))]
    if plan.get("refused"):
        out += [
            ("h2", "Refused strategies"),
            ("table", ("strategy", "reason"), list(plan["refused"].items())),
        ]
    if plan.get("capped"):
        out += [
            ("h2", "Capped budgets"),
            ("table", ("budget", "what happened"), list(plan["capped"].items())),
        ]
    if summary.get("notes"):
        out += [("h2", "Notes")] + [("p", n) for n in summary["notes"]]
    return out


def _html_table(headers: tuple, rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(title: str, content: list[tuple]) -> str:
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    ]
    parts.append(f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>")
    first_p = True
    for block in content:
        kind = block[0]
        if kind == "h2":
            parts.append(f"<h2>{html.escape(block[1])}</h2>")
        elif kind == "p":
            cls = " class='verdict' id='verdict'" if first_p else ""
            parts.append(f"<p{cls}>{html.escape(block[1])}</p>")
            first_p = False
        elif kind == "warn":
            parts.append(f"<p class='warn'>WARNING: {html.escape(block[1])}</p>")
        elif kind == "table":
            parts.append(_html_table(block[1], block[2]))
        elif kind == "img" and block[2]:
            data = base64.b64encode(Path(block[2]).read_bytes()).decode("ascii")
            alt = html.escape(block[3])
            parts.append(f"<img id='plot-{block[1]}' alt='{alt}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, content: list[tuple], folder: Path) -> str:
    lines = [f"# {title}", ""]
    for block in content:
        kind = block[0]
        if kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "warn":
            lines += [f"> **WARNING:** {block[1]}", ""]
        elif kind == "table":
            headers = [_md_cell(h) or " " for h in block[1]]
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_md_cell(v) for v in r) + " |" for r in block[2]]
            lines.append("")
        elif kind == "img" and block[2]:
            lines += [f"![{block[3]}]({Path(block[2]).relative_to(folder).as_posix()})", ""]
    return "\n".join(lines)


def write(grid: Grid, results: dict, summary: dict, best: dict | None) -> tuple[Path, Path]:
    """Writes report.html and report.md atomically; returns their paths."""
    plan = grid.plan
    title = f"transferkit compare: {plan.get('dataset', '?')} / {plan.get('backbone', '?')} ({plan.get('task', '?')})"
    content = blocks(grid, results, summary, best)
    html_path = atomic_write_text(grid.folder / HTML_FILE, render_html(title, content))
    md_path = atomic_write_text(grid.folder / MARKDOWN_FILE, render_markdown(title, content, grid.folder))
    return html_path, md_path
