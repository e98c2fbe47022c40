"""A compare's ``results.json`` read back: checked on load, and its done cells grouped by strategy and
budget (:class:`Grid`) for the report's analysis, plots and text."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transferkit.errors import RunError

RESULTS_FILE = "results.json"
ALL = "all"


def load_results(folder: str | Path) -> dict:
    """Reads and checks ``folder/results.json``.

    Raises:
        RunError: If the file is missing, not JSON, or lacks ``plan`` / ``cells`` (one line naming the file).
    """
    path = Path(folder) / RESULTS_FILE
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: not found; is {folder} a `transferkit compare` folder?") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: cannot read it ({e})") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(results, dict) or not isinstance(results.get("plan"), dict):
        raise RunError(f"{path}: no 'plan' object; not the results of `transferkit compare`")
    cells = results.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) and "strategy" in c for c in cells):
        raise RunError(f"{path}: 'cells' must be a list of cells, each with a 'strategy'")
    return results


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


class Grid:
    """The done cells of one compare, grouped by strategy and budget, with the plan's direction."""

    def __init__(self, folder: Path, results: Mapping[str, Any]) -> None:
        self.folder = folder
        self.plan: dict = dict(results["plan"])
        self.cells: list[dict] = list(results["cells"])
        self.metric: str = self.plan.get("metric", "metric")
        self.higher: bool = bool(self.plan.get("higher_is_better", True))
        self.unit: str = self.plan.get("budget_unit", "examples")
        self.done = [c for c in self.cells if c.get("status") == "done" and _number(c.get("test"))]
        self.num_classes = self._num_classes()
        self.notes: list[str] = []  # said once in the report: predictions missing, fall-backs taken
        self._predictions: dict[str, dict | None] = {}

    def _num_classes(self) -> int:
        for c in self.cells:
            cm = (c.get("test_metrics") or {}).get("confusion_matrix")
            if isinstance(cm, dict) and cm.get("labels"):
                return len(cm["labels"])
        for c in self.cells:
            if _number(c.get("budget")) and _number(c.get("examples")) and c["budget"] > 0:
                return max(1, round(c["examples"] / c["budget"]))
        return 1

    # ---------------------------------------------------------------------------------------- budgets
    def size(self, budget: Any) -> float:
        """Labelled examples per class (or sentences / examples) a budget really used: "all" at its size."""
        examples = [
            c["examples"] for c in self.cells if c.get("budget") == budget and _number(c.get("examples"))
        ]
        if examples:
            per = statistics.fmean(examples)
            return per / self.num_classes if self.unit == "per class" else per
        return float(budget) if _number(budget) else float("inf")

    def budgets(self) -> list[Any]:
        seen = []
        for b in [*(self.plan.get("budgets") or []), *(c.get("budget") for c in self.cells)]:
            if b is not None and b not in seen:
                seen.append(b)
        return sorted(seen, key=self.size)

    def budget_label(self, budget: Any) -> str:
        if budget == ALL:
            size = self.size(budget)
            return f"all ({size:.0f} {self.unit})" if size != float("inf") else "all"
        return f"{budget} {self.unit}"

    # ---------------------------------------------------------------------------------------- arms
    def names(self, kind: str | None = None) -> list[str]:
        out = []
        for c in self.cells:
            if (kind is None or c.get("kind") == kind) and c["strategy"] not in out:
                out.append(c["strategy"])
        return out

    def arm(self, strategy: str, budget: Any) -> list[dict]:
        """Done cells of one strategy at one budget, ordered by seed."""
        found = [c for c in self.done if c["strategy"] == strategy and c.get("budget") == budget]
        return sorted(found, key=lambda c: (c.get("seed") is None, c.get("seed") or 0))

    def mean_std(self, strategy: str, budget: Any, key: str = "test") -> tuple[float, float | None] | None:
        values = [c[key] for c in self.arm(strategy, budget) if _number(c.get(key))]
        return _mean_std(values) if values else None

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher else a < b

    def reaches(self, value: float, target: float) -> bool:
        return value >= target if self.higher else value <= target

    def predictions(self, cell: Mapping[str, Any]) -> dict | None:
        """The cell's ``{"y_true", "y_pred"}``, or None (missing or unreadable: noted once)."""
        rel = cell.get("predictions")
        if not rel:
            return None
        if rel not in self._predictions:
            try:
                loaded = json.loads((self.folder / rel).read_text(encoding="utf-8"))
                self._predictions[rel] = loaded if isinstance(loaded.get("y_pred"), list) else None
            except (OSError, ValueError, AttributeError):
                self._predictions[rel] = None
            if self._predictions[rel] is None:
                self.notes.append(f"{rel}: missing or unreadable; its cell's gains use seeds only")
        return self._predictions[rel]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
