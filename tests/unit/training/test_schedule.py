"""The data-derived schedule: steps, batch size, evaluations and patience follow the documented rule."""

from __future__ import annotations

import math

import pytest

from transferkit.config import TrainingConfig
from transferkit.training.schedule import batch_size_for, is_auto, plan_schedule


def spe(n: int, cfg: TrainingConfig) -> int:
    return math.ceil(n / batch_size_for(cfg, n))


@pytest.mark.parametrize(
    ("n", "batch"), [(8, 8), (32, 8), (64, 16), (100, 25), (128, 32), (300, 32), (10_000, 32)]
)
def test_auto_batch_size_shrinks_on_small_sets(n: int, batch: int) -> None:
    assert batch_size_for(TrainingConfig(), n) == batch
    assert batch_size_for(TrainingConfig(batch_size=4), n) == 4  # an explicit batch size is kept
    assert batch_size_for(TrainingConfig(epochs=3), n) == 32  # explicit epochs: the batch size of old


def test_small_sets_get_at_least_min_steps_within_the_epoch_cap() -> None:
    cfg = TrainingConfig()
    s = plan_schedule(cfg, 300, spe(300, cfg))  # the 300 examples: 10 steps per epoch
    assert (s.total_steps, s.epochs, s.patience) == (200, 20.0, 5)
    assert 5 <= s.total_steps / s.eval_every <= 20
    tiny = plan_schedule(cfg, 32, spe(32, cfg))  # 4 steps per epoch: capped at 20 epochs
    assert tiny.total_steps == 80 and tiny.batch_size == 8 and "capped" in tiny.rule


def test_large_sets_train_three_epochs_with_at_least_five_evaluations() -> None:
    cfg = TrainingConfig()
    s = plan_schedule(cfg, 10_000, spe(10_000, cfg))
    assert s.total_steps == 3 * 313 and s.epochs == 3
    assert math.ceil(s.total_steps / s.eval_every) == 5


def test_cached_heads_get_a_longer_minimum() -> None:
    cfg = TrainingConfig()
    plain = plan_schedule(cfg, 2000, 63)
    cached = plan_schedule(cfg, 2000, 63, cached=True)
    assert plain.total_steps == 200 and cached.total_steps == 1000


def test_explicit_epochs_or_steps_switch_the_rule_off() -> None:
    cfg = TrainingConfig(epochs=2)
    assert not is_auto(cfg)
    s = plan_schedule(cfg, 300, 10)
    assert (s.total_steps, s.eval_every, s.patience, s.rule) == (20, 10, None, "training.epochs")
    s = plan_schedule(TrainingConfig(max_steps=7, early_stopping_patience=2), 300, 10)
    assert (s.total_steps, s.patience) == (7, 2)


def test_settings_steer_the_rule() -> None:
    s = plan_schedule(TrainingConfig(min_steps=50, max_epochs=3, early_stopping_patience=0), 300, 10)
    assert s.total_steps == 30 and s.patience is None  # 0: never stop early


def test_evaluations_cost_no_more_than_training() -> None:
    cfg = TrainingConfig()
    tiny = plan_schedule(cfg, 16, spe(16, cfg), num_validation=256)  # 40 steps x 8 rows: 960 forwards
    assert math.ceil(tiny.total_steps / tiny.eval_every) == 5
    roomy = plan_schedule(cfg, 300, spe(300, cfg), num_validation=100)
    assert math.ceil(roomy.total_steps / roomy.eval_every) == 20
    cached = plan_schedule(cfg, 16, spe(16, cfg), cached=True, num_validation=10_000)
    assert math.ceil(cached.total_steps / cached.eval_every) == 20  # cached passes are nearly free


def test_resume_under_the_data_derived_schedule_equals_uninterrupted(
    toy_csv, tmp_path, interrupted_copy
) -> None:
    """auto strategy + auto schedule (probe start evaluated at step 0, patience): a kill, then --resume."""
    import json

    import transferkit

    args = dict(
        train=str(toy_csv), backbone="tiny-bert",
        overrides=["training.progress=false", "training.min_steps=12", "training.max_epochs=4",
                   "training.checkpoint_every_steps=3", "training.keep_checkpoints=10", "training.learning_rate=1e-3",
                   "output.tensorboard=false"],
    )  # fmt: skip
    whole = transferkit.fit(output=str(tmp_path / "whole"), **args)
    assert whole.metrics["auto"]["choice"] == "lp-ft" and whole.metrics["training"]["schedule"][
        "rule"
    ].startswith("auto")
    cut = interrupted_copy(whole.run_dir, tmp_path / "cut", 6)
    resumed = transferkit.fit(resume=cut)
    assert resumed.metrics["training"]["resumed_from_step"] == 6
    assert resumed.metrics["auto"] == whole.metrics["auto"]  # read back from RUN/auto.json
    assert json.loads((cut / "auto.json").read_text())["choice"] == "lp-ft"
    for split in ("validation", "test"):
        assert resumed.metrics[split]["f1_macro"] == whole.metrics[split]["f1_macro"]
        assert resumed.metrics[split]["loss"] == pytest.approx(whole.metrics[split]["loss"], abs=1e-6)
    assert resumed.metrics["training"]["steps"] == whole.metrics["training"]["steps"]
