"""Label budgets: parsing, nested stratified draws, capping."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from transferkit.comparison.budgets import ALL, cap_budgets, draw, parse_budgets
from transferkit.errors import ConfigError


def test_parse_sorts_and_keeps_all_last() -> None:
    assert parse_budgets("128, 8,all,32") == [8, 32, 128, ALL]


@pytest.mark.parametrize("text", ["8,x", "0,8", "-4", "8,8", "", "8.5", "1e3"])
def test_malformed_budget_lists_are_one_line_errors(text) -> None:
    with pytest.raises(ConfigError, match="--budgets") as err:
        parse_budgets(text)
    assert "\n" not in str(err.value)


def test_draws_are_stratified_and_nested_for_one_seed() -> None:
    labels = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    small, large = draw(100, labels, 4, seed=3), draw(100, labels, 16, seed=3)
    assert set(small) <= set(large)
    for cls in "abc":
        assert (labels[small] == cls).sum() == 4 and (labels[large] == cls).sum() == 16
    assert not np.array_equal(draw(100, labels, 4, seed=3), draw(100, labels, 4, seed=4))
    assert np.array_equal(draw(100, labels, 4, seed=3), small)  # seeded
    assert len(draw(100, labels, ALL, seed=3)) == 100


def test_unstratified_draws_nest_too() -> None:
    assert set(draw(40, None, 5, 0)) <= set(draw(40, None, 20, 0))
    assert len(draw(40, None, 20, 0)) == 20


def test_a_budget_above_the_data_is_capped_with_a_warning_naming_it(caplog) -> None:
    labels = np.array(["a"] * 10 + ["b"] * 6)
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        kept, notes = cap_budgets([4, 8, 64, ALL], labels, 16, "per class")
    assert kept == [4, 8, ALL]  # 64 is all of the data, which "all" already covers
    assert set(notes) == {"8", "64"} and "64" in caplog.text and "smallest class (6)" in notes["8"]
    kept, _ = cap_budgets([4, 64], labels, 16, "per class")
    assert kept == [4, 64]  # without "all", the capped budget stays (as all of the data)


def test_cover_puts_every_class_into_the_smallest_draw_and_keeps_nesting() -> None:
    cover = [set()] * 90 + [{"PER"}] * 5 + [{"LOC", "ORG"}] * 5  # rare types at the end of the pool
    for seed in range(5):
        small = draw(100, None, 3, seed, cover)
        assert set().union(*(cover[i] for i in small)) == {"PER", "LOC", "ORG"}
        assert set(small) <= set(draw(100, None, 30, seed, cover))
