"""The compare plan: strategy checks before anything starts, baselines per task."""

from __future__ import annotations

import pytest

import transferkit.strategies  # noqa: F401  registers the strategies
from transferkit.comparison.grid import parse_strategies, plan_cells
from transferkit.errors import ConfigError
from transferkit.tasks import TASKS


def test_unknown_strategy_is_a_one_line_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'lorra'.*lp-ft"):
        parse_strategies("linear-probe,lorra", TASKS.get("text-classification"))


def test_auto_is_refused_because_it_picks_another_strategy() -> None:
    with pytest.raises(ConfigError, match="chooses another strategy"):
        parse_strategies("auto", TASKS.get("text-classification"))


def test_strategies_a_task_refuses_are_listed_with_the_reason() -> None:
    kept, refused = parse_strategies("lora,linear-probe,full", TASKS.get("generation"))
    assert kept == ["lora", "full"]
    assert "generation" in refused["linear-probe"]


@pytest.mark.parametrize(
    ("task", "baselines"),
    [
        ("text-classification", {"scratch", "tfidf+lr", "majority"}),
        ("image-classification", {"scratch", "pixels+lr", "majority"}),
        ("token-classification", {"scratch", "most-frequent-tag"}),
        ("generation", {"scratch"}),
    ],
)
def test_every_budget_and_seed_gets_the_task_baselines(task, baselines) -> None:
    cells = plan_cells(["lora"], TASKS.get(task), [8, "all"], [0, 1])
    for budget in (8, "all"):
        for seed in (0, 1):
            here = {c.strategy for c in cells if c.budget == budget and c.seed == seed}
            assert here == baselines | {"lora"}
    assert len({c.id for c in cells}) == len(cells)


def test_seeds_at_all_trims_only_the_trunk_training_arms_at_the_all_budget() -> None:
    spec = TASKS.get("text-classification")
    cells = plan_cells(["linear-probe", "head", "lp-ft", "full"], spec, [8, "all"], [0, 1, 2], seeds_at_all=1)
    seeds = {}
    for c in cells:
        seeds.setdefault((c.strategy, c.budget), set()).add(c.seed)
    for arm in ("lp-ft", "full", "scratch"):
        assert seeds[(arm, 8)] == {0, 1, 2} and seeds[(arm, "all")] == {0}
    for arm in ("linear-probe", "head", "tfidf+lr", "majority"):  # cheap: every seed everywhere
        assert seeds[(arm, 8)] == seeds[(arm, "all")] == {0, 1, 2}
    assert plan_cells(["full"], spec, ["all"], [0, 1]) == plan_cells(["full"], spec, ["all"], [0, 1], None)
