"""The plan of a compare: which cells (strategy or baseline x budget x seed) and what was refused."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transferkit.comparison.budgets import ALL
from transferkit.errors import ConfigError

SCRATCH = "scratch"
MAJORITY = "majority"
DEFAULT_STRATEGIES = ("linear-probe", "head", "lp-ft", "lora", "full")
ON_FROZEN_FEATURES = ("linear-probe", "head")  # cheap at any budget: a head on the shared feature pass


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``kind``: transfer, scratch, classical or majority."""

    strategy: str
    kind: str
    budget: int | str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.strategy}-b{self.budget}-s{self.seed}"

    def record(self) -> dict:
        return asdict(self) | {"id": self.id}


def parse_strategies(text: str | None, spec) -> tuple[list[str], dict[str, str]]:
    """Requested strategies the task accepts, and {refused: reason}; unknown names are a one-line error."""
    # torch, transformers, PIL ... load on first use, not when grid is imported
    from transferkit.strategies import STRATEGIES

    # torch, transformers, PIL ... load on first use, not when grid is imported
    from transferkit.strategies.base import trainable_strategies

    names = [s.strip() for s in text.split(",") if s.strip()] if text else list(DEFAULT_STRATEGIES)
    known = trainable_strategies()
    for name in names:
        if name not in STRATEGIES:
            raise ConfigError(f"--strategies: unknown strategy {name!r}; known: {', '.join(known)}")
        if name not in known:
            raise ConfigError(
                f"--strategies: {name!r} chooses another strategy; list the strategies to compare"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"--strategies: {text!r} names a strategy twice")
    refused = {n: spec.refused_strategies[n] for n in names if n in spec.refused_strategies}
    return [n for n in names if n not in refused], refused


def plan_cells(
    strategies: list[str], spec, budgets: list, seeds: list[int], seeds_at_all: int | None = None
) -> list[Cell]:
    """Every cell, budget by budget (small first: the curve fills from the left when time is short).

    ``seeds_at_all``: at the ``all`` budget, the strategies that train the trunk (every one but those on
    frozen features) and scratch run only the first this many seeds; baselines and frozen-feature heads run
    every seed (None: every seed everywhere).
    """
    baselines = [(SCRATCH, "scratch")]
    if spec.classical is not None:
        baselines.append((spec.classical[0], "classical"))
    if spec.label_column is not None:
        baselines.append((MAJORITY, "majority"))
    cells = []
    for budget in budgets:
        for seed in seeds:
            trunk = budget != ALL or seeds_at_all is None or seed < seeds[0] + seeds_at_all
            cells += [Cell(name, kind, budget, seed) for name, kind in baselines if kind != "scratch"]
            cells += [
                Cell(s, "transfer", budget, seed) for s in strategies if trunk or s in ON_FROZEN_FEATURES
            ]
            if trunk:
                cells.append(Cell(SCRATCH, "scratch", budget, seed))
    return cells
