"""Transfer strategies: one module each, registered by one call at its end.

Adding a strategy: write ``strategies/NAME.py`` with a :class:`StrategySettings` subclass and an
``apply(model, settings, training) -> StrategyPlan``, end it with ``register_strategy(...)``, import it
below, and add a row to the strategy test matrix (``tests/unit/strategies``).
"""

from transferkit.strategies.base import (
    STRATEGIES,
    Strategy,
    StrategyPlan,
    StrategySettings,
    count_parameters,
    register_strategy,
    strategy_errors,
    strategy_settings,
    validate_strategy_settings,
)
from transferkit.strategies import full as _full  # noqa: F401, E402  isort: skip
from transferkit.strategies import head as _head  # noqa: F401, E402  isort: skip

__all__ = [
    "STRATEGIES",
    "Strategy",
    "StrategyPlan",
    "StrategySettings",
    "count_parameters",
    "register_strategy",
    "strategy_errors",
    "strategy_settings",
    "validate_strategy_settings",
]
