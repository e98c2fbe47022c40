"""``head``: the trunk is frozen; a linear or MLP head trains on features computed once and cached.

A linear head starts from the linear probe fitted to convergence on the same features (L-BFGS, L2 chosen on
validation) and the loop evaluates that start first: gradient steps can only keep or improve it on
validation, so ``head`` never ends below the pretrained baseline it prints. An MLP head starts at random and
trains on the cached features for the long data-derived schedule (steps cost microseconds) with early
stopping.

The frozen trunk runs in eval mode (no dropout), so its features are a pure function of the input: running
it once per example and caching the result gives the same head as running it every step, only faster.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from torch import nn

from transferkit.config import TrainingConfig
from transferkit.strategies.base import (
    StrategyPlan,
    StrategySettings,
    decay_groups,
    head_lr,
    register_strategy,
    yaml_off,
)


class HeadSettings(StrategySettings):
    cache: Literal["auto", "memory", "disk", "off"] = Field(
        "auto",
        description="Where cached features live: auto (memory under 1 GiB, else disk), memory, disk, or off (re-run the trunk every step).",
    )

    _cache_off = field_validator("cache", mode="before")(yaml_off)


def apply(model: nn.Module, settings: HeadSettings, training: TrainingConfig) -> StrategyPlan:
    model.backbone.requires_grad_(False)
    model.head.requires_grad_(True)
    groups = decay_groups(model, model.head.parameters(), head_lr(training, True), training.weight_decay)
    cache = None if settings.cache == "off" else "features"
    return StrategyPlan(
        param_groups=groups,
        cache=cache,
        cache_location=settings.cache,
        frozen_trunk=True,
        frozen_modules=[model.backbone],
        probe_init=model.config.head_kind == "linear",
    )


register_strategy("head", HeadSettings, apply, "frozen trunk, a linear or MLP head trains on cached features")
