"""One compare cell: its settings (a normal run of the cell's strategy, budget and seed on the grid's
frames, or a baseline), how it runs, and the figures it adds to ``results.json``."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import pandas as pd

from transferkit.artifacts import DATAFRAME
from transferkit.comparison.grid import Cell
from transferkit.config import load_config
from transferkit.errors import ConfigError
from transferkit.evaluation.baselines import majority
from transferkit.tasks import fit_task
from transferkit.utils.io import atomic_write_json

log = logging.getLogger("transferkit")
SCRATCH_LR = 3e-4  # random init needs a larger step than fine-tuning (5e-5); the rest of the loop is the same


def request_config(request: dict):

    return load_config(request.get("config"), list(request.get("overrides") or []))


def base_overrides(request: dict) -> list[str]:
    extra = []
    for key, path in (("task", "task.type"), ("dataset", "data.dataset"), ("backbone", "backbone.name")):
        if request.get(key):
            extra.append(f"{path}={request[key]}")
    return extra + list(request.get("overrides") or [])


def load_frames(cfg, spec) -> dict[str, pd.DataFrame]:
    """The data set as catalog-column frames (text/label, tokens/tags, ...), test and validation held out once."""
    # sklearn, scipy, PIL ... load on first use, not when cells is imported
    from transferkit.data.catalog import load_catalog_dataset

    # sklearn, scipy, PIL ... load on first use, not when cells is imported
    from transferkit.data.readers import read_table

    # sklearn, scipy, PIL ... load on first use, not when cells is imported
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


class PeakRSS:
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


def cell_overrides(cell: Cell, root: Path, spec, progress: bool) -> list[str]:
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


def test_numbers(block: dict) -> dict:
    keep = {k: v for k, v in block.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for k in ("confusion_matrix", "per_type"):
        if k in block:
            keep[k] = block[k]
    return keep


def run_neural(cell: Cell, root: Path, frames: dict, request: dict, spec, progress: bool) -> dict:
    # torch, transformers, peft ... load on first use, not when cells is imported
    from transferkit.training.resume import newest_checkpoint

    run_dir = root / "cells" / cell.id
    if (run_dir / "metrics.json").is_file():  # finished before an interruption hit results.json
        metrics = json.loads((run_dir / "metrics.json").read_text())
    elif newest_checkpoint(run_dir / "checkpoints") is not None:
        log.info(f"{cell.id}: resuming from its checkpoint")
        saved = load_config(run_dir / "config.yaml")
        saved.output.dir = str(run_dir)
        metrics = fit_task(saved, frames, resume=True).metrics
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # started but nothing to resume from
        cfg = load_config(
            request.get("config"), [*base_overrides(request), *cell_overrides(cell, root, spec, progress)]
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
        "test_metrics": test_numbers(metrics["test"]), "trainable_parameters": metrics.get("trainable_parameters"),
        "run_dir": str(run_dir.relative_to(root)), "predictions": str(preds.relative_to(root)) if preds.is_file() else None,
        "model": metrics.get("model"), "warnings": metrics.get("warnings", []),
        "feature_store": metrics.get("feature_store"), "steps": (metrics.get("training") or {}).get("steps"),
    }  # fmt: skip


def run_baseline(cell: Cell, root: Path, frames: dict, spec) -> dict:

    out = spec.classical[1](frames) if cell.kind == "classical" else majority(frames, spec.label_column)
    folder = root / "cells" / cell.id
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "test_predictions.json", out["predictions"])
    return {
        "validation": out["validation"], "test": out["test"], "test_metrics": out["test_metrics"],
        "trainable_parameters": None, "run_dir": None, "predictions": str((folder / "test_predictions.json").relative_to(root)),
    }  # fmt: skip
