"""``lp-ft``: a linear probe fitted to convergence on frozen features, then full fine-tuning starting from
that head (Kumar et al., 2022): the trunk's features are not distorted by a random head's gradients."""

from __future__ import annotations

from torch import nn

from transferkit.config import TrainingConfig
from transferkit.strategies.base import StrategyPlan, StrategySettings, decay_groups, register_strategy


class LpFtSettings(StrategySettings):
    """``lp-ft`` has no settings of its own (the probe's L2 strength is chosen on validation)."""


def apply(model: nn.Module, settings: LpFtSettings, training: TrainingConfig) -> StrategyPlan:
    if model.config.head_kind != "linear":
        from transferkit.errors import ConfigError

        raise ConfigError("strategy lp-ft needs head.kind=linear (the probe becomes the head)")
    model.requires_grad_(True)
    # after the probe the head is already good: it trains at the trunk's rate unless told otherwise
    lr_head = training.head_learning_rate or training.learning_rate
    groups = decay_groups(model, model.backbone.parameters(), training.learning_rate, training.weight_decay)
    groups += decay_groups(model, model.head.parameters(), lr_head, training.weight_decay)
    return StrategyPlan(param_groups=groups, probe_init=True)


register_strategy(
    "lp-ft", LpFtSettings, apply, "linear probe to convergence, then full fine-tuning from that head"
)
