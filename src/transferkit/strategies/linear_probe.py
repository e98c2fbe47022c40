"""``linear-probe``: trunk frozen, features cached, a linear head fitted to convergence in closed form.

The head is an L2-regularised logistic (or ridge) regression solved with L-BFGS by scikit-learn on the
cached features; its strength is chosen on validation. No gradient steps: the fastest first look.
"""

from __future__ import annotations

from torch import nn

from transferkit.config import TrainingConfig
from transferkit.strategies.base import StrategyPlan, StrategySettings, register_strategy


class LinearProbeSettings(StrategySettings):
    """``linear-probe`` has no settings; the L2 strength is searched on validation (C in 0.01..10)."""


def apply(model: nn.Module, settings: LinearProbeSettings, training: TrainingConfig) -> StrategyPlan:
    if model.config.head_kind != "linear":
        from transferkit.errors import ConfigError

        raise ConfigError(
            "strategy linear-probe needs head.kind=linear (it fits a linear model in closed form)"
        )
    model.backbone.requires_grad_(False)
    model.head.requires_grad_(True)
    return StrategyPlan(
        param_groups=[],
        cache="features",
        frozen_trunk=True,
        frozen_modules=[model.backbone],
        closed_form=True,
    )


register_strategy(
    "linear-probe",
    LinearProbeSettings,
    apply,
    "frozen trunk, cached features, linear head fitted to convergence (L-BFGS, L2 chosen on validation)",
)
