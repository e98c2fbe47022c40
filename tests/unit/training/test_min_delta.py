"""``training.min_delta``: a probe start is displaced, and the baseline beaten, only by more than the threshold."""

from __future__ import annotations

import pytest
import torch

import transferkit
from transferkit.evaluation.guard import below_baseline, keep_better
from transferkit.evaluation.metrics import is_better
from transferkit.training.best import BestKeeper, min_delta_for
from transferkit.training.state import LoopState, TrainResult


@pytest.mark.parametrize(
    ("setting", "metric", "n", "expected"),
    [
        ("auto", "f1_macro", 256, 2 / 256),  # two validation examples' worth
        ("auto", "accuracy", 40, 2 / 40),
        ("auto", "exact_match", 200, 2 / 200),
        ("auto", "perplexity", 256, 0.0),  # lower is better and unbounded: no example count maps onto it
        ("auto", "loss", 256, 0.0),
        ("auto", "f1_macro", 0, 0.0),  # no validation set
        (0.0, "f1_macro", 256, 0.0),
        (0.05, "perplexity", 256, 0.05),  # an explicit value is taken as given
    ],
)
def test_min_delta_rule(setting, metric: str, n: int, expected: float) -> None:
    assert min_delta_for(setting, metric, n) == pytest.approx(expected)


def test_is_better_by_more_than_min_delta_in_either_direction() -> None:
    assert is_better("f1_macro", 0.81, 0.80, 0.0078) and not is_better("f1_macro", 0.807, 0.80, 0.0078)
    assert not is_better("f1_macro", 0.8078, 0.80, 0.0078)  # exactly the threshold does not count
    assert is_better("perplexity", 9.8, 10.0, 0.1) and not is_better("perplexity", 9.95, 10.0, 0.1)
    assert is_better("f1_macro", 0.1, None, 0.5)  # the first evaluation is always the best so far


def test_keeper_ignores_improvements_within_min_delta() -> None:
    model = torch.nn.Linear(2, 2)
    keeper = BestKeeper(model, "f1_macro", patience=2, every_weight=False, min_delta=0.01)
    state, result = LoopState(), TrainResult()
    assert keeper.offer(0.80, state, result) is False and result.best_step == 0
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    state.step = 10
    assert keeper.offer(0.805, state, result) is False  # +0.005: noise, the start stays the best
    assert result.best_metric == 0.80 and result.best_step == 0 and state.bad_evals == 0
    state.step = 20
    assert keeper.offer(0.805, state, result) is False and state.bad_evals == 1  # no gain at all
    state.step = 30
    assert keeper.offer(0.801, state, result) is True  # patience runs out
    keeper.restore()
    assert torch.equal(model.weight, start["weight"])  # the start's weights come back
    keeper = BestKeeper(model, "f1_macro", patience=2, every_weight=False, min_delta=0.01)
    state, result = LoopState(), TrainResult()
    keeper.offer(0.80, state, result)
    state.step = 10
    keeper.offer(0.82, state, result)
    assert result.best_step == 10 and state.bad_evals == 0
    state.step = 20  # once the start is displaced, any strict gain counts (no early stop on small steps)
    keeper.offer(0.8201, state, result)
    assert result.best_step == 20 and state.bad_evals == 0


def test_without_a_step_zero_start_every_gain_counts() -> None:
    """``full`` / ``lora`` have no probe start: their first evaluation is after training steps, and the
    threshold then only matters to the guard."""
    keeper = BestKeeper(torch.nn.Linear(2, 2), "f1_macro", patience=2, every_weight=False, min_delta=0.01)
    state, result = LoopState(step=5), TrainResult()
    keeper.offer(0.80, state, result)
    state.step = 10
    keeper.offer(0.801, state, result)
    assert result.best_step == 10 and result.best_metric == 0.801


def _guarded(tuned: float, base: float, metric: str = "f1_macro") -> dict:
    return {
        "validation": {metric: tuned}, "test": {metric: tuned - 0.02},
        "pretrained_baseline": {"validation": {metric: base}, "test": {metric: base}},
    }  # fmt: skip


def test_guard_keeps_the_baseline_within_min_delta() -> None:
    assert below_baseline(_guarded(0.8003, 0.80), "f1_macro", 0.0078) is not None
    assert "within training.min_delta" in below_baseline(_guarded(0.8003, 0.80), "f1_macro", 0.0078)
    assert below_baseline(_guarded(0.8003, 0.80), "f1_macro") is None  # min_delta 0: any gain counts
    assert below_baseline(_guarded(0.81, 0.80), "f1_macro", 0.0078) is None
    assert below_baseline(_guarded(0.80, 0.80), "f1_macro", 0.0078) is None  # the probe itself
    assert "below" in below_baseline(_guarded(0.79, 0.80), "f1_macro", 0.0078)
    assert below_baseline(_guarded(9.95, 10.0, "perplexity"), "perplexity", 0.1) is not None
    m = _guarded(0.8003, 0.80)
    assert keep_better(m, "f1_macro", True, lambda: "baseline", min_delta=0.0078) == "baseline"
    assert m["model"] == "pretrained_baseline" and m["test"]["f1_macro"] == 0.80
    assert m["fine_tuned"]["validation"]["f1_macro"] == 0.8003


def _head_run(frames, tmp_path, name: str, min_delta: str):
    return transferkit.fit(
        frames=frames, backbone="tiny-bert", strategy="head", output=str(tmp_path / name),
        overrides=["training.max_steps=40", "training.evaluations_per_epoch=2", "training.progress=false",
                   "training.head_learning_rate=0.5", f"training.min_delta={min_delta}"],
    )  # fmt: skip


def test_a_run_that_cannot_clear_min_delta_keeps_its_probe_start(toy_frames, tmp_path) -> None:
    """``head`` starts from the probe (the baseline) and evaluates it first; with a threshold no change can
    clear, the start is the run's model, scored like the baseline, and no warning is raised."""
    stuck = _head_run(toy_frames, tmp_path, "stuck", "1.0").metrics
    assert stuck["best_validation_metric"]["step"] == 0 and stuck["training"]["min_delta"] == 1.0
    assert stuck["validation"]["f1_macro"] == pytest.approx(
        stuck["pretrained_baseline"]["validation"]["f1_macro"]
    )
    assert stuck["training"]["steps"] > 0 and not stuck.get("warnings")
    moved = _head_run(toy_frames, tmp_path, "any", "0").metrics  # the same run takes any gain
    assert moved["best_validation_metric"]["step"] > 0
    assert moved["validation"]["f1_macro"] > stuck["validation"]["f1_macro"]
    auto = _head_run(toy_frames, tmp_path, "auto", "auto").metrics
    assert auto["training"]["min_delta"] == pytest.approx(2 / 12, abs=1e-6)  # 12 validation rows (10% of 120)


def test_the_guard_threshold_spares_a_run_that_kept_its_start() -> None:
    # best at step 0: the probe start, the baseline itself up to numerics; no threshold against itself
    assert TrainResult(best_step=0, min_delta=0.1).guard_min_delta == 0.0
    assert TrainResult(best_step=12, min_delta=0.1).guard_min_delta == 0.1
    assert TrainResult(best_step=None, min_delta=0.1).guard_min_delta == 0.1  # closed form: no loop ran


def test_gains_within_min_delta_are_not_kept_but_keep_training_going() -> None:
    """Small steps up from the start reset patience (as with no threshold), so a run that climbs slowly
    reaches the gain it would have reached; only the kept checkpoint needs the threshold."""
    keeper = BestKeeper(torch.nn.Linear(2, 2), "f1_macro", patience=2, every_weight=False, min_delta=0.01)
    state, result = LoopState(), TrainResult()
    keeper.offer(0.80, state, result)
    for step, value in [(10, 0.803), (20, 0.802), (30, 0.806), (40, 0.805)]:
        state.step = step
        assert keeper.offer(value, state, result) is False, step
    assert result.best_step == 0 and state.best_seen == 0.806 and state.bad_evals == 1
    state.step = 50
    assert keeper.offer(0.83, state, result) is False and result.best_step == 50
    state.step, saved = 60, dict(vars(state))
    restored = LoopState.from_checkpoint(saved, patience=2)  # resume keeps the count and the best seen
    assert restored.best_seen == 0.83 and restored.bad_evals == 0
    old = {k: v for k, v in saved.items() if k != "best_seen"}  # a checkpoint from before the field
    assert LoopState.from_checkpoint(old, patience=2).best_seen is None
