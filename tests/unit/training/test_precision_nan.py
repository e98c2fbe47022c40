"""A loss that turns NaN stops the run with one line naming what to change (under mixed precision: the
precision setting)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import transferkit
import transferkit.training.loop as loop
from transferkit.errors import RunError


def _nan_loss(real):
    def compute(logits, *args, **kwargs):
        return real(logits, *args, **kwargs) * torch.tensor(float("nan"))

    return compute


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_nan_loss_under_bf16_names_training_precision(
    monkeypatch, toy_csv: Path, tmp_path: Path, precision
) -> None:
    monkeypatch.setattr(loop, "compute_loss", _nan_loss(loop.compute_loss))
    args = dict(train=str(toy_csv), backbone="tiny-bert", strategy="full", output=str(tmp_path / "run"))
    overrides = ["training.progress=false", "training.max_steps=3", f"training.precision={precision}"]
    expected = (
        r"became nan at step 0 under bf16 .*training\.precision=fp32"
        if precision == "bf16"
        else r"became nan at step 0: lower training\.learning_rate"
    )
    with pytest.raises(RunError, match=expected) as err:
        transferkit.fit(**args, overrides=overrides)
    assert "\n" not in str(err.value)
