"""The decision table of strategy auto, and what a run records about it."""

from __future__ import annotations

import json

import pytest

import transferkit
from transferkit.config import TrainingConfig
from transferkit.training.strategy_choice import (
    CPU_BUDGET,
    FEW_SHOT,
    LARGE_TRUNK,
    Facts,
    choose,
    per_class_count,
)


def facts(**kw) -> Facts:
    base = dict(
        task="text-classification", problem="single_label", num_train=256, per_class=128, input_length=30,
        trunk_parameters=11_000_000, head_kind="linear", device="cpu", threads=2, forward_seconds=0.005,
        num_eval=500,
    )  # fmt: skip
    return Facts(**(base | kw))


@pytest.mark.parametrize(
    ("kw", "choice"),
    [
        ({}, "lp-ft"),
        ({"per_class": FEW_SHOT - 1, "num_train": 30}, "lp-ft"),  # few-shot: still lp-ft (vader_tweets/8)
        ({"per_class": FEW_SHOT - 1, "num_train": 30, "head_kind": "mlp"}, "head"),
        ({"head_kind": "mlp"}, "full"),
        ({"task": "image-classification", "input_length": 96}, "full"),  # mnist5k/32 and /128
        ({"task": "image-classification", "per_class": FEW_SHOT - 1, "num_train": 80}, "lp-ft"),  # mnist5k/8
        ({"trunk_parameters": LARGE_TRUNK + 1}, "lora"),
        ({"task": "generation", "per_class": None}, "lora"),
        ({"problem": "regression", "per_class": None}, "lp-ft"),
        ({"forward_seconds": 10.0}, "linear-probe"),  # nothing fine-tunes within the CPU default budget
        ({"device": "cuda", "forward_seconds": 10.0}, "lp-ft"),  # no default budget with an accelerator
    ],
)
def test_decision_table(kw: dict, choice: str) -> None:
    assert choose(facts(**kw), TrainingConfig()).name == choice


def test_a_time_budget_falls_back_to_cheaper_plans() -> None:
    f = facts(num_train=2000, per_class=1000, forward_seconds=0.004)
    est = choose(f, TrainingConfig()).estimates
    assert est["linear-probe"] < est["top-k"] < est["lp-ft"]
    between = (est["top-k"] + est["lp-ft"]) / 2
    assert choose(facts(num_train=2000, per_class=1000, forward_seconds=0.004, time_budget=between), TrainingConfig()).name == "top-k"  # fmt: skip
    tight = choose(facts(num_train=2000, per_class=1000, forward_seconds=0.004, time_budget=est["linear-probe"] / 2), TrainingConfig())  # fmt: skip
    assert tight.name == "linear-probe" and "training.time_budget" in tight.reason
    assert est["lp-ft"] < CPU_BUDGET


def test_per_class_count_takes_the_rarest_class() -> None:
    assert per_class_count(["a", "b", "a", "a"]) == 1
    assert per_class_count([["PER", "LOC"], ["PER"], ["O"]]) == 1


def test_fit_without_strategy_runs_auto_and_records_why(toy_frames, tmp_path) -> None:
    run = transferkit.fit(frames=toy_frames, backbone="tiny-bert", output=str(tmp_path / "run"),
                          overrides=["training.progress=false"])  # fmt: skip
    m = run.metrics
    assert m["auto"]["choice"] == m["strategy"] == "lp-ft"  # 48 examples per class: above the few-shot row
    assert "per class" in m["auto"]["reason"] and m["auto"]["facts"]["per_class"] == 48
    saved = json.loads((run.run_dir / "auto.json").read_text())
    assert saved["choice"] == "lp-ft"
    assert "strategy chosen by auto" in (run.run_dir / "README.md").read_text().lower()
    assert "name: lp-ft" in (run.run_dir / "config.yaml").read_text()  # resume re-runs the choice, not auto
