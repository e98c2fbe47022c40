"""``auto``: the default strategy. It is replaced before training by the strategy that the decision table in
:mod:`transferkit.training.strategy_choice` chooses from the task, the data, the backbone, the hardware and
``training.time_budget``; the choice and its reason are recorded in ``metrics.json`` (``auto``).
"""

from __future__ import annotations

from torch import nn

from transferkit.config import TrainingConfig
from transferkit.errors import ConfigError
from transferkit.strategies.base import StrategyPlan, StrategySettings, register_strategy


class AutoSettings(StrategySettings):
    """``auto`` has no settings: it picks a strategy, which then runs with its own defaults."""


def _apply(model: nn.Module, settings: AutoSettings, training: TrainingConfig) -> StrategyPlan:
    raise ConfigError("strategy auto is resolved to a concrete strategy before training; this is a bug")


register_strategy(
    "auto",
    AutoSettings,
    _apply,
    "choose from task, labels per class, sizes, hardware and time budget (default)",
    chooses=True,
)
