"""Transfer strategies: one module each, registered by one call at its end.

Adding a strategy: write ``strategies/NAME.py`` with a :class:`StrategySettings` subclass and an
``apply(model, settings, training) -> StrategyPlan``, end it with ``register_strategy(...)``, import it
below, and add a row to the strategy test matrix (``tests/unit/strategies``).
"""

from transferkit.config import register_strategy_check
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
from transferkit.strategies.peft import lora as _lora  # noqa: F401, E402  isort: skip
from transferkit.strategies.peft import adalora as _adalora  # noqa: F401, E402  isort: skip
from transferkit.strategies.peft import ia3 as _ia3  # noqa: F401, E402  isort: skip
from transferkit.strategies import linear_probe as _linear_probe  # noqa: F401, E402  isort: skip
from transferkit.strategies import top_k as _top_k  # noqa: F401, E402  isort: skip
from transferkit.strategies import gradual as _gradual  # noqa: F401, E402  isort: skip
from transferkit.strategies import discriminative as _discriminative  # noqa: F401, E402  isort: skip
from transferkit.strategies import lp_ft as _lp_ft  # noqa: F401, E402  isort: skip
from transferkit.strategies import auto as _auto  # noqa: F401, E402  isort: skip

# Every strategy is registered: from now on load_config checks strategy.* against them (config sits below
# this package and never imports it).
register_strategy_check(strategy_errors)

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
