"""``discriminative``: every layer group trains at its own learning rate, ``lr * decay ** depth_from_top``
(lower layers hold more general features and move less)."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from transferkit.config import TrainingConfig
from transferkit.strategies.base import (
    StrategyPlan,
    StrategySettings,
    layerwise_groups,
    num_groups,
    register_strategy,
    set_trainable,
)


class DiscriminativeSettings(StrategySettings):
    layer_decay: float = Field(
        0.8, gt=0, le=1, description="Learning-rate decay per layer group going down from the top."
    )


def apply(model: nn.Module, settings: DiscriminativeSettings, training: TrainingConfig) -> StrategyPlan:
    groups = list(range(num_groups(model)))
    set_trainable(model, groups)
    return StrategyPlan(param_groups=layerwise_groups(model, groups, training, settings.layer_decay))


register_strategy(
    "discriminative",
    DiscriminativeSettings,
    apply,
    "layer-wise learning rates: lr * decay ** depth_from_top for every layer group",
)
