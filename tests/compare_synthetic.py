"""A synthetic ``transferkit compare`` folder for the report tests: results.json plus per-cell test predictions
whose accuracy is set per arm and budget (each prediction is right with that probability)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LABELS = ("neg", "neu", "pos")
ALL_SIZE = 500  # examples per class behind the "all" budget


def arms(transfer: float = 0.8, scratch: float = 0.55) -> dict[str, tuple[str, dict]]:
    """name -> (kind, {budget: probability that a prediction is right})."""
    return {
        "lp-ft": ("transfer", {8: transfer, 64: transfer + 0.05, "all": transfer + 0.08}),
        "linear-probe": ("transfer", {8: transfer - 0.1, 64: transfer - 0.05, "all": transfer}),
        "scratch": ("scratch", {8: scratch, 64: scratch + 0.1, "all": scratch + 0.2}),
        "tfidf+lr": ("classical", {8: scratch - 0.05, 64: scratch + 0.05, "all": scratch + 0.15}),
    }


def write_compare(
    folder: Path,
    arm_table: dict[str, tuple[str, dict]] | None = None,
    n_test: int = 400,
    seeds: tuple[int, ...] = (0, 1, 2),
    predictions: bool = True,
    extra_cells: list[dict] | None = None,
    seed: int = 0,
) -> Path:
    """Writes ``folder/results.json`` and ``folder/cells/<id>/test_predictions.json``; returns ``folder``."""
    rng = np.random.default_rng(seed)
    arm_table = arms() if arm_table is None else arm_table
    y_true = rng.choice(LABELS, size=n_test)
    cells = []
    for name, (kind, by_budget) in arm_table.items():
        for budget, p_right in by_budget.items():
            for s in seeds:
                right = rng.random(n_test) < p_right
                shift = rng.integers(1, len(LABELS), size=n_test)  # a wrong label, uniformly
                wrong = np.array(
                    [LABELS[(LABELS.index(t) + k) % len(LABELS)] for t, k in zip(y_true, shift, strict=True)]
                )
                y_pred = np.where(right, y_true, wrong)
                acc = float((y_pred == y_true).mean())
                cell_id = f"{name}-b{budget}-s{s}"
                rel = f"cells/{cell_id}/test_predictions.json"
                if predictions:
                    path = folder / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps({"y_true": y_true.tolist(), "y_pred": y_pred.tolist()}))
                matrix = [[int(((y_true == t) & (y_pred == p)).sum()) for p in LABELS] for t in LABELS]
                per_class = ALL_SIZE if budget == "all" else budget
                cells.append(
                    {
                        "id": cell_id,
                        "strategy": name,
                        "kind": kind,
                        "budget": budget,
                        "examples": per_class * len(LABELS),
                        "seed": s,
                        "status": "done",
                        "error": None,
                        "validation": acc + float(rng.normal(0, 0.005)),
                        "test": acc,
                        "test_metrics": {
                            "accuracy": acc,
                            "confusion_matrix": {"labels": list(LABELS), "matrix": matrix},
                        },
                        "wall_seconds": float(per_class) * (3.0 if kind == "transfer" else 0.5) + s,
                        "trainable_parameters": 770 if name == "linear-probe" else 22_000_000,
                        "peak_rss_mb": 900.0,
                        "run_dir": f"cells/{cell_id}",
                        "predictions": rel if predictions else None,
                    }
                )
    cells += extra_cells or []
    budgets = sorted(
        {b for _, by in arm_table.values() for b in by}, key=lambda b: (b == "all", str(b).zfill(6))
    )
    plan = {
        "task": "text-classification",
        "dataset": "synthetic",
        "backbone": "minilm-l6",
        "metric": "accuracy",
        "higher_is_better": True,
        "budget_unit": "per class",
        "strategies": [n for n, (k, _) in arm_table.items() if k == "transfer"],
        "baselines": [n for n, (k, _) in arm_table.items() if k != "transfer"],
        "budgets": budgets,
        "seeds": list(seeds),
        "refused": {"lora": "needs peft, which is not installed"},
        "capped": {"512": "capped to 480 per class"},
        "classical": "tfidf+lr" if "tfidf+lr" in arm_table else None,
        "classical_note": None,
        "cpu": "Synthetic CPU",
        "created": "2026-12-02T21:00:00Z",
    }
    results = {
        "version": 1,
        "plan": plan,
        "cells": cells,
        "wall_seconds": 321.0,
        "features": {"computed": 1200, "reused": 3400, "seconds": 40.0, "saved_seconds": 113.0},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    return folder
