"""Evaluation batches capped by a token budget (``training.eval_max_tokens``): bounded memory, same outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.config import load_config
from transferkit.data.text import LengthGroupedBatchSampler
from transferkit.inference import forward_in_order, single_process_budget


def _lengths(n: int = 300, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(1, 200, size=n)]


def test_budget_bounds_every_batch_and_keeps_every_example_once():
    lengths = _lengths()
    sampler = LengthGroupedBatchSampler(lengths, 64, seed=0, shuffle=False, max_tokens=1000)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 64
        longest = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * longest <= 1000
    # long examples get fewer rows than short ones, longest first
    assert len(batches[0]) < len(batches[-1])
    assert lengths[batches[0][0]] == max(lengths)
    assert len(sampler) == len(batches)
    assert sampler.batch_size is None  # dynamic batches, as accelerate expects them


def test_without_budget_batches_are_fixed_size():
    sampler = LengthGroupedBatchSampler(_lengths(), 64, seed=0, shuffle=False)
    sizes = [len(b) for b in sampler]
    assert sizes[:-1] == [64] * (len(sizes) - 1) and sampler.batch_size == 64


def test_an_example_longer_than_the_budget_gets_a_batch_of_its_own():
    batches = list(LengthGroupedBatchSampler([500, 10, 10], 8, seed=0, shuffle=False, max_tokens=100))
    assert batches == [[0], [1, 2]]


def test_budget_is_for_evaluation_only():
    with pytest.raises(ValueError, match="evaluation"):
        LengthGroupedBatchSampler([1, 2], 2, seed=0, shuffle=True, max_tokens=10)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        return {"x": torch.full((self.lengths[i],), float(i))}


def _collate(items):
    width = max(len(it["x"]) for it in items)
    return {"x": torch.stack([torch.nn.functional.pad(it["x"], (0, width - len(it["x"]))) for it in items])}


def test_budgeted_forward_returns_the_same_outputs_in_input_order():
    data = _Rows(_lengths(120, seed=1))
    seen: list[int] = []

    def fn(batch):
        seen.append(batch["x"].numel())
        return torch.stack([batch["x"].sum(1), batch["x"].max(1).values], dim=1)

    plain = forward_in_order(fn, data, _collate, 32)
    cells_plain = max(seen)
    seen.clear()
    capped = forward_in_order(fn, data, _collate, 32, max_tokens=600)
    assert torch.equal(plain, capped)
    assert max(seen) <= max(600, max(data.lengths)) < cells_plain


class _Accel:
    def __init__(self, n):
        self.num_processes = n


def test_budget_applies_in_one_process_only():
    assert single_process_budget(4096, None) == 4096
    assert single_process_budget(4096, _Accel(1)) == 4096
    assert single_process_budget(4096, _Accel(2)) is None


def test_config_default_and_off_switch():
    data = ["data.dataset=rotten_tomatoes"]
    assert load_config(None, data).training.eval_max_tokens == 4096
    assert load_config(None, [*data, "training.eval_max_tokens=null"]).training.eval_max_tokens is None
