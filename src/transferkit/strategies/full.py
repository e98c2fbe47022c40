"""``full``: every weight trains (the trunk at ``learning_rate``, the new head faster)."""

from __future__ import annotations

from torch import nn

from transferkit.config import TrainingConfig
from transferkit.strategies.base import (
    StrategyPlan,
    StrategySettings,
    decay_groups,
    head_lr,
    register_strategy,
)


class FullSettings(StrategySettings):
    """``full`` has no settings of its own."""


def apply(model: nn.Module, settings: FullSettings, training: TrainingConfig) -> StrategyPlan:
    model.requires_grad_(True)
    groups = decay_groups(model, model.backbone.parameters(), training.learning_rate, training.weight_decay)
    groups += decay_groups(model, model.head.parameters(), head_lr(training, False), training.weight_decay)
    return StrategyPlan(param_groups=groups)


register_strategy("full", FullSettings, apply, "full fine-tuning: every backbone weight and the head train")
