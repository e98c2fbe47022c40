"""``transferkit compare``: a grid of runs that shows what the transfer bought.

Cells are strategy (or baseline) x label budget x seed. Validation and test are held out once, the same for
every cell; each budget is a nested, stratified draw from the rest (:mod:`transferkit.comparison.budgets`). A
neural cell is a normal run folder (``DIR/cells/<id>``: predict, serve and export work on it); the frozen
trunk's features are computed once for the whole grid (``training.feature_store`` = ``DIR/features``).
``results.json`` / ``results.csv`` are rewritten atomically after every cell, so an interrupted compare
(kill -9 included) continues with ``--resume DIR``: finished cells are skipped, a cell with a checkpoint
resumes from it, a failed cell keeps its one-line error and the grid goes on.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import transferkit.strategies  # noqa: F401  registers the strategy.* check that load_config runs
from transferkit import hardware
from transferkit.comparison import cells
from transferkit.comparison.budgets import cap_budgets, draw, parse_budgets
from transferkit.comparison.grid import Cell, parse_strategies, plan_cells
from transferkit.errors import ConfigError, RunError, TransferkitError
from transferkit.tasks import TASKS, use_default_backbone
from transferkit.tracking import log_parent_results, parent_run
from transferkit.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger("transferkit")
VERSION = 1


@dataclass
class CompareResult:
    """A finished (or partly finished) compare: its folder and ``results.json``."""

    dir: Path
    results: dict


def parse_duration(text: str | float | None) -> float | None:
    """``"45m"`` / ``"1h30m"`` / ``"90s"`` / ``"3600"`` -> seconds."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    parts = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or parts is None or not any(parts.groups()):
        raise ConfigError(f"--time-budget: {text!r} is not a duration (e.g. 45m, 1h30m, 900s)")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s


def _cpu_line() -> str:
    cpu = hardware.cpu_info()
    return f"{cpu.model} ({cpu.capability}, {cpu.isa()})"


def _save(root: Path, results: dict) -> None:
    atomic_write_json(root / "results.json", results)
    rows = [{k: v for k, v in c.items() if not isinstance(v, dict | list)} for c in results["cells"]]
    atomic_write_text(root / "results.csv", pd.DataFrame(rows).to_csv(index=False))


def _features_summary(cells: list[dict]) -> dict:
    stores = [c["feature_store"] for c in cells if c.get("feature_store")]
    computed = sum(s["computed"] for s in stores)
    reused = sum(s["reused"] for s in stores)
    seconds = sum(s["seconds"] for s in stores)
    per = seconds / computed if computed else 0.0
    return {"computed": computed, "reused": reused, "seconds": seconds, "saved_seconds": reused * per}


def _new_request(**kw) -> dict:

    request = {k: v for k, v in kw.items() if v is not None}
    cfg = cells.request_config({"config": request.get("config"), "overrides": cells.base_overrides(request)})
    spec = TASKS.get(cfg.task.type)
    strategies, refused = parse_strategies(request.get("strategies"), spec)
    budgets = parse_budgets(request.get("budgets", "8,32,128,all"))
    seeds = int(request.get("seeds", 3))
    if seeds < 1:
        raise ConfigError("--seeds: give at least 1")
    at_all = request.get("seeds_at_all")
    if at_all is not None and not 1 <= int(at_all) <= seeds:
        raise ConfigError(f"--seeds-at-all: give 1 to --seeds ({seeds}), got {at_all}")
    request.update(task=cfg.task.type, strategies=",".join(strategies), budgets=budgets, seeds=seeds)
    return request | {"refused": refused}


def compare(
    config: str | Path | None = None,
    *,
    dataset: str | None = None,
    task: str | None = None,
    backbone: str | None = None,
    strategies: str | None = None,
    budgets: str = "8,32,128,all",
    seeds: int = 3,
    seeds_at_all: int | None = None,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    time_budget: str | float | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    report: bool = True,
) -> CompareResult:
    """Runs (or resumes) a compare grid and writes its results and report.

    Args:
        config: A run YAML every cell starts from.
        dataset / task / backbone: Shortcuts for data.dataset, task.type, backbone.name.
        strategies: Comma-separated strategies (default linear-probe,head,lp-ft,lora,full); baselines
            (scratch, the task's classical one, the majority class) are always added.
        budgets: Labelled examples per class (sentences for NER), e.g. "8,32,128,all".
        seeds: Seeds 0..seeds-1 (each draws its own budget subsets and trains with that seed).
        seeds_at_all: At the ``all`` budget, run the strategies that train the trunk (and scratch) with only
            the first this many seeds (the costliest cells of a grid); None: every seed.
        output: The compare folder (default runs/compare-<dataset>-<time>); must not hold another compare.
        resume: An interrupted compare folder: continue it with its saved plan (other arguments ignored).
        time_budget: Wall time for the grid ("45m"): cells not started in time are left pending (resumable).
        overrides: ``key.path=value`` settings for every cell.
        progress: Show each cell's training bar.
        report: Write report.html / report.md at the end.

    Returns:
        The folder and ``results.json``'s content.

    Example:
        >>> import transferkit
        >>> res = transferkit.compare(dataset="rotten_tomatoes", strategies="linear-probe,lp-ft",
        ...                           budgets="8,64", seeds=2)  # doctest: +SKIP
    """

    if resume is not None:
        root, request, results = _reopen(Path(resume))
    else:
        request = _new_request(
            config=str(config) if config else None, dataset=dataset, task=task, backbone=backbone,
            strategies=strategies, budgets=budgets, seeds=seeds, seeds_at_all=seeds_at_all,
            overrides=list(overrides or []),
        )  # fmt: skip
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(output or f"runs/compare-{request.get('dataset') or 'data'}-{stamp}")
        if (root / "plan.json").exists():
            raise RunError(
                f"{root}: already holds a compare; continue it with --resume {root} or pick another --output"
            )
        results = None
    cfg = cells.request_config({"config": request.get("config"), "overrides": cells.base_overrides(request)})
    spec = TASKS.get(cfg.task.type)
    use_default_backbone(cfg, spec)
    for name, why in request["refused"].items():
        log.warning(f"--strategies: {name} is left out: it {why}")
    frames = cells.load_frames(cfg, spec)
    pool = frames["train"]
    labels = pool[spec.label_column].astype(str).to_numpy() if spec.label_column else None
    budget_list, capped = cap_budgets(list(request["budgets"]), labels, len(pool), spec.budget_unit)
    seed_list = list(range(int(request["seeds"])))
    strategies_list = [s for s in request["strategies"].split(",") if s]
    grid = plan_cells(strategies_list, spec, budget_list, seed_list, request.get("seeds_at_all"))
    if results is None:
        plan = {
            "task": spec.name, "dataset": cfg.data.dataset or str(cfg.data.train), "backbone": cfg.backbone.name,
            "metric": spec.main_metric, "higher_is_better": spec.higher_is_better, "budget_unit": spec.budget_unit,
            "strategies": strategies_list, "baselines": sorted({c.strategy for c in grid if c.kind != "transfer"}),
            "budgets": budget_list, "seeds": seed_list, "seeds_at_all": request.get("seeds_at_all"), "refused": request["refused"], "capped": capped,
            "classical": spec.classical[0] if spec.classical else None, "classical_note": spec.classical_note,
            "cpu": _cpu_line(), "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "pool": len(pool), "validation": len(frames["validation"]), "test": len(frames["test"]),
        }  # fmt: skip
        results = _start(root, request, plan, grid)
    return _run_grid(
        root, request, results, grid, frames, labels, spec, parse_duration(time_budget), progress, report, cfg
    )


def _reopen(root: Path) -> tuple[Path, dict, dict]:
    """(folder, request, results) of an interrupted compare."""
    if not (root / "plan.json").is_file():
        raise RunError(f"{root}: not a compare folder (no plan.json); nothing to resume")
    try:
        request = json.loads((root / "plan.json").read_text())["request"]
        results = json.loads((root / "results.json").read_text())
    except (OSError, ValueError, KeyError) as err:
        raise RunError(f"{root}: plan.json / results.json unreadable ({err}); start a new compare") from None
    return root, request, results


def _start(root: Path, request: dict, plan: dict, grid: list[Cell]) -> dict:
    """Writes a new compare's plan.json and its results with every cell pending."""
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "plan.json", {"version": VERSION, "request": request, "plan": plan})
    results = {"version": VERSION, "plan": plan, "cells": [c.record() | {"status": "pending"} for c in grid],
               "wall_seconds": 0.0, "features": {}}  # fmt: skip
    _save(root, results)
    return results


def _run_grid(
    root, request, results, grid, frames, labels, spec, deadline_s, progress, report, cfg
) -> CompareResult:

    by_id = {c["id"]: c for c in results["cells"]}
    for cell in grid:  # a resumed plan keeps its records; cells it lacks (none, normally) are added
        by_id.setdefault(cell.id, cell.record() | {"status": "pending"})
    results["cells"] = [by_id[c.id] for c in grid]
    todo = [c for c in grid if by_id[c.id]["status"] != "done"]
    total, done0 = len(grid), len(grid) - len(todo)
    log.info(
        f"compare: {total} cells ({done0} done before), {spec.name} on {results['plan']['dataset']}, folder {root}"
    )
    start, spent = time.perf_counter(), []
    draws: dict[tuple, np.ndarray] = {}
    cover = spec.cover(frames["train"]) if spec.cover is not None and labels is None else None
    params = {"task": spec.name, "dataset": results["plan"]["dataset"], "strategies": request["strategies"],
              "budgets": ",".join(map(str, results["plan"]["budgets"])), "seeds": len(results["plan"]["seeds"])}  # fmt: skip
    with parent_run(
        cfg.tracking.mlflow, cfg.tracking.experiment, f"compare {root.name}", params, {"kind": "compare"}
    ) as pid:
        request["parent_run_id"] = pid
        for i, cell in enumerate(todo):
            if deadline_s is not None and time.perf_counter() - start > deadline_s:
                log.warning(
                    f"--time-budget spent: {len(todo) - i} cells left pending; continue with --resume {root}"
                )
                break
            key = (cell.budget, cell.seed)
            if key not in draws:
                draws[key] = draw(len(frames["train"]), labels, cell.budget, cell.seed, cover)
            pos = draws[key]
            cell_frames = dict(frames, train=frames["train"].iloc[pos].reset_index(drop=True))
            record = by_id[cell.id]
            t0 = time.perf_counter()
            try:
                with cells.PeakRSS() as rss:
                    if cell.kind in ("classical", "majority"):
                        out = cells.run_baseline(cell, root, cell_frames, spec)
                    else:
                        out = cells.run_neural(cell, root, cell_frames, request, spec, progress)
                record.update(out, status="done", error=None, peak_rss_mb=round(rss.mb, 1))
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001  one cell's failure is recorded; the grid goes on
                line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                if not isinstance(err, TransferkitError):
                    line = f"{type(err).__name__}: {line}"
                log.warning(f"{cell.id} failed: {line}")
                record.update(status="failed", error=line)
            record.update(examples=int(len(pos)), wall_seconds=round(time.perf_counter() - t0, 3))
            spent.append(record["wall_seconds"])
            results["wall_seconds"] = round(results.get("wall_seconds", 0.0) + record["wall_seconds"], 3)
            results["features"] = _features_summary(results["cells"])
            _save(root, results)
            n = done0 + i + 1
            eta = np.mean(spent) * (total - n)
            value = record.get("test")
            shown = f"test {spec.main_metric} {value:.4f}" if isinstance(value, float) else record["status"]
            log.info(
                f"compare [{n}/{total}] {cell.id}: {shown} in {record['wall_seconds']:.1f} s; eta {eta / 60:.1f} min"
            )
        summary = None
        if report:
            from transferkit.comparison.report import build_report

            summary = build_report(root)
        finals = {f"{c['id']}.test": c["test"] for c in results["cells"] if isinstance(c.get("test"), float)}
        log_parent_results(
            cfg.tracking.mlflow,
            pid,
            finals,
            [root / "results.json", root / "report.html"] if summary else [root / "results.json"],
        )
    results["summary"] = summary
    return CompareResult(root, results)
