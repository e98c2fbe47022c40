"""``ia3``: (IA)3, learned scales on the keys, values and feed-forward inputs of the frozen trunk."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from transferkit.config import TrainingConfig
from transferkit.strategies.base import StrategyPlan, register_strategy
from transferkit.strategies.peft.common import Names, _adapt, _AdapterSettings, _note, _plan
from transferkit.strategies.peft.targets import fan_in_fan_out, resolve_targets


class IA3Settings(_AdapterSettings):
    feedforward_modules: Literal["auto"] | Names = Field(
        "auto",
        description="Targets that are feed-forward layers (IA3 scales their input): 'auto' or suffixes.",
    )
    lr_multiplier: float = Field(
        60.0, gt=0, description="Scales train at training.learning_rate x this (3e-3)."
    )


def apply_ia3(model: nn.Module, settings: IA3Settings, training: TrainingConfig) -> StrategyPlan:
    # peft, scipy, psutil load on first use, not when ia3 is imported
    from peft import IA3Config

    targets = resolve_targets(model.backbone, settings, "ia3")
    config = IA3Config(
        target_modules=targets.names,
        feedforward_modules=targets.feedforward,
        fan_in_fan_out=fan_in_fan_out(model.backbone, targets.names),
    )
    # Scaling vectors start at 1; weight decay would pull them towards 0, so they take none.
    peft_model, groups = _adapt(model, config, training, settings.lr_multiplier, decay=False)
    lr = training.learning_rate * settings.lr_multiplier
    note = _note(f"IA3 ({len(targets.feedforward)} feed-forward)", targets, lr)
    return _plan(model, peft_model, groups, [note], merge=settings.merge)


register_strategy("ia3", IA3Settings, apply_ia3, "(IA)3: learned scales on keys, values, feed-forward inputs")
