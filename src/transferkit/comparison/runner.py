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
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import transferkit.strategies  # noqa: F401  registers the strategy.* check that load_config runs
from transferkit.comparison.budgets import cap_budgets, draw, parse_budgets
from transferkit.comparison.grid import Cell, parse_strategies, plan_cells
from transferkit.errors import ConfigError, RunError, TransferkitError
from transferkit.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger("transferkit")
VERSION = 1
SCRATCH_LR = 3e-4  # random init needs a larger step than fine-tuning (5e-5); the rest of the loop is the same
DATAFRAME = "<DataFrame>"


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


def _request_config(request: dict):
    from transferkit.config import load_config

    return load_config(request.get("config"), list(request.get("overrides") or []))


def _base_overrides(request: dict) -> list[str]:
    extra = []
    for key, path in (("task", "task.type"), ("dataset", "data.dataset"), ("backbone", "backbone.name")):
        if request.get(key):
            extra.append(f"{path}={request[key]}")
    return extra + list(request.get("overrides") or [])


def load_frames(cfg, spec) -> dict[str, pd.DataFrame]:
    """The data set as catalog-column frames (text/label, tokens/tags, ...), test and validation held out once."""
    from transferkit.data.catalog import load_catalog_dataset
    from transferkit.data.readers import read_table
    from transferkit.data.split import hold_out, subsample

    data = cfg.data
    if data.dataset:
        frames = dict(load_catalog_dataset(data.dataset))
    elif data.train:
        frames = {
            s: read_table(getattr(data, s)) for s in ("train", "validation", "test") if getattr(data, s)
        }
        rename = {data.text_column: "text", data.label_column: "label"}
        if spec.name == "image-classification":
            rename = {cfg.image.path_column: "text", data.label_column: "label"}
        frames = {s: f.rename(columns=rename) for s, f in frames.items()}
    else:
        raise ConfigError("compare needs data: --dataset NAME or data.train in --config")
    lab = spec.label_column
    pool = frames["train"].reset_index(drop=True)
    if "validation" not in frames or "test" not in frames:
        labels = pool[lab].astype(str).tolist() if lab else None
        held = hold_out(
            len(pool), None if "validation" in frames else data.validation_size,
            None if "test" in frames else data.test_size, data.split_seed, labels,
        )  # fmt: skip
        for split in ("validation", "test"):
            if split not in frames:
                frames[split] = pool.iloc[getattr(held, split)].reset_index(drop=True)
        pool = pool.iloc[held.train].reset_index(drop=True)
    frames["train"] = pool
    for split in ("validation", "test"):
        f = frames[split].reset_index(drop=True)
        keep = subsample(
            len(f), data.max_eval_samples, data.split_seed, f[lab].astype(str).tolist() if lab else None
        )
        frames[split] = f.iloc[keep].reset_index(drop=True)
    return frames


class _PeakRSS:
    """Samples the process's resident memory while a cell runs (the cells share one process)."""

    def __enter__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.peak = self.proc.memory_info().rss

        def sample():
            while not self._stop.wait(0.1):
                self.peak = max(self.peak, self.proc.memory_info().rss)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mb = self.peak / 2**20


def _cell_overrides(cell: Cell, root: Path, spec, progress: bool) -> list[str]:
    out = [
        f"training.seed={cell.seed}", f"output.dir={root / 'cells' / cell.id}", f"training.progress={str(progress).lower()}",
        "data.dataset=null", f"data.train={DATAFRAME}", "data.validation=null", "data.test=null",
        "data.text_column=text", "data.label_column=label", "data.max_train_samples=null", "data.max_eval_samples=null",
        *spec.frame_overrides,
    ]  # fmt: skip
    if cell.kind == "scratch":
        return [*out, "strategy.name=full", "backbone.pretrained=false", "evaluation.pretrained_baseline=false",
                "evaluation.keep_better=false", f"training.learning_rate={SCRATCH_LR}"]  # fmt: skip
    return [*out, f"strategy.name={cell.strategy}", f"training.feature_store={root / 'features'}"]


def _numbers(block: dict) -> dict:
    keep = {k: v for k, v in block.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for k in ("confusion_matrix", "per_type"):
        if k in block:
            keep[k] = block[k]
    return keep


def _run_neural(cell: Cell, root: Path, frames: dict, request: dict, spec, progress: bool) -> dict:
    from transferkit.config import load_config
    from transferkit.tasks import fit_task
    from transferkit.training.resume import newest_checkpoint

    run_dir = root / "cells" / cell.id
    if (run_dir / "metrics.json").is_file():  # finished before an interruption hit results.json
        import json

        metrics = json.loads((run_dir / "metrics.json").read_text())
    elif newest_checkpoint(run_dir / "checkpoints") is not None:
        log.info(f"{cell.id}: resuming from its checkpoint")
        saved = load_config(run_dir / "config.yaml")
        saved.output.dir = str(run_dir)
        metrics = fit_task(saved, frames, resume=True).metrics
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # started but nothing to resume from
        cfg = load_config(
            request.get("config"), [*_base_overrides(request), *_cell_overrides(cell, root, spec, progress)]
        )
        if cfg.tracking.mlflow and request.get("parent_run_id"):
            cfg.tracking.parent_run_id = request["parent_run_id"]
            cfg.tracking.tags = {
                **cfg.tracking.tags,
                "budget": str(cell.budget),
                "seed": str(cell.seed),
                "cell": cell.id,
            }
        metrics = fit_task(cfg, frames).metrics
    metric = spec.main_metric
    preds = run_dir / "test_predictions.json"
    return {
        "validation": metrics["validation"].get(metric), "test": metrics["test"].get(metric),
        "test_metrics": _numbers(metrics["test"]), "trainable_parameters": metrics.get("trainable_parameters"),
        "run_dir": str(run_dir.relative_to(root)), "predictions": str(preds.relative_to(root)) if preds.is_file() else None,
        "model": metrics.get("model"), "warnings": metrics.get("warnings", []),
        "feature_store": metrics.get("feature_store"), "steps": (metrics.get("training") or {}).get("steps"),
    }  # fmt: skip


def _run_baseline(cell: Cell, root: Path, frames: dict, spec) -> dict:
    from transferkit.evaluation.baselines import majority

    out = spec.classical[1](frames) if cell.kind == "classical" else majority(frames, spec.label_column)
    folder = root / "cells" / cell.id
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "test_predictions.json", out["predictions"])
    return {
        "validation": out["validation"], "test": out["test"], "test_metrics": out["test_metrics"],
        "trainable_parameters": None, "run_dir": None, "predictions": str((folder / "test_predictions.json").relative_to(root)),
    }  # fmt: skip


def _cpu_line() -> str:
    import platform

    try:
        import torch

        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001  an older torch: the model name still says which machine
        isa = "?"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        extra = [f for f in ("amx_bf16", "avx512_bf16", "avx512_vnni") if f in flags]
    except OSError:
        extra = []
    return f"{name} ({', '.join([isa, *extra])})"


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
    from transferkit.tasks import TASKS

    request = {k: v for k, v in kw.items() if v is not None}
    cfg = _request_config({"config": request.get("config"), "overrides": _base_overrides(request)})
    spec = TASKS.get(cfg.task.type)
    strategies, refused = parse_strategies(request.get("strategies"), spec)
    budgets = parse_budgets(request.get("budgets", "8,32,128,all"))
    seeds = int(request.get("seeds", 3))
    if seeds < 1:
        raise ConfigError("--seeds: give at least 1")
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
    import json

    from transferkit.tasks import TASKS

    if resume is not None:
        root = Path(resume)
        if not (root / "plan.json").is_file():
            raise RunError(f"{root}: not a compare folder (no plan.json); nothing to resume")
        try:
            request = json.loads((root / "plan.json").read_text())["request"]
            results = json.loads((root / "results.json").read_text())
        except (OSError, ValueError, KeyError) as err:
            raise RunError(
                f"{root}: plan.json / results.json unreadable ({err}); start a new compare"
            ) from None
    else:
        request = _new_request(
            config=str(config) if config else None, dataset=dataset, task=task, backbone=backbone,
            strategies=strategies, budgets=budgets, seeds=seeds, overrides=list(overrides or []),
        )  # fmt: skip
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(output or f"runs/compare-{request.get('dataset') or 'data'}-{stamp}")
        if (root / "plan.json").exists():
            raise RunError(
                f"{root}: already holds a compare; continue it with --resume {root} or pick another --output"
            )
        results = None
    from transferkit.tasks import use_default_backbone

    cfg = _request_config({"config": request.get("config"), "overrides": _base_overrides(request)})
    spec = TASKS.get(cfg.task.type)
    use_default_backbone(cfg, spec)
    for name, why in request["refused"].items():
        log.warning(f"--strategies: {name} is left out: it {why}")
    frames = load_frames(cfg, spec)
    pool = frames["train"]
    labels = pool[spec.label_column].astype(str).to_numpy() if spec.label_column else None
    budgets, capped = cap_budgets(list(request["budgets"]), labels, len(pool), spec.budget_unit)
    seed_list = list(range(int(request["seeds"])))
    strategies_list = [s for s in request["strategies"].split(",") if s]
    cells = plan_cells(strategies_list, spec, budgets, seed_list)
    if results is None:
        root.mkdir(parents=True, exist_ok=True)
        plan = {
            "task": spec.name, "dataset": cfg.data.dataset or str(cfg.data.train), "backbone": cfg.backbone.name,
            "metric": spec.main_metric, "higher_is_better": spec.higher_is_better, "budget_unit": spec.budget_unit,
            "strategies": strategies_list, "baselines": sorted({c.strategy for c in cells if c.kind != "transfer"}),
            "budgets": budgets, "seeds": seed_list, "refused": request["refused"], "capped": capped,
            "classical": spec.classical[0] if spec.classical else None, "classical_note": spec.classical_note,
            "cpu": _cpu_line(), "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "pool": len(pool), "validation": len(frames["validation"]), "test": len(frames["test"]),
        }  # fmt: skip
        atomic_write_json(root / "plan.json", {"version": VERSION, "request": request, "plan": plan})
        results = {"version": VERSION, "plan": plan, "cells": [c.record() | {"status": "pending"} for c in cells],
                   "wall_seconds": 0.0, "features": {}}  # fmt: skip
        _save(root, results)
    return _run_grid(
        root,
        request,
        results,
        cells,
        frames,
        labels,
        spec,
        parse_duration(time_budget),
        progress,
        report,
        cfg,
    )


def _run_grid(
    root, request, results, cells, frames, labels, spec, deadline_s, progress, report, cfg
) -> CompareResult:
    from transferkit.tracking import log_parent_results, parent_run

    by_id = {c["id"]: c for c in results["cells"]}
    for cell in cells:  # a resumed plan keeps its records; cells it lacks (none, normally) are added
        by_id.setdefault(cell.id, cell.record() | {"status": "pending"})
    results["cells"] = [by_id[c.id] for c in cells]
    todo = [c for c in cells if by_id[c.id]["status"] != "done"]
    total, done0 = len(cells), len(cells) - len(todo)
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
                with _PeakRSS() as rss:
                    if cell.kind in ("classical", "majority"):
                        out = _run_baseline(cell, root, cell_frames, spec)
                    else:
                        out = _run_neural(cell, root, cell_frames, request, spec, progress)
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
