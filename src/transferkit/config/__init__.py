"""Typed run configuration: one YAML (or flags) describes data, backbone, task, strategy, training,
evaluation, output and tracking.

``schema`` holds the section models, ``loading`` turns a YAML file plus overrides into a validated
:class:`RunConfig` (``load_config``), reporting every error at once with its field path.
"""

from transferkit.config.loading import (
    StrategyCheck,
    build_config,
    deep_merge,
    explain,
    load_config,
    parse_overrides,
    register_strategy_check,
)
from transferkit.config.schema import (
    BackboneConfig,
    DataConfig,
    EvaluationConfig,
    GenerationTaskConfig,
    HeadConfig,
    ImageTaskConfig,
    OutputConfig,
    RunConfig,
    Section,
    StrategyConfig,
    TaskConfig,
    TokenTaskConfig,
    TrackingConfig,
    TrainingConfig,
)

__all__ = [
    "BackboneConfig",
    "DataConfig",
    "EvaluationConfig",
    "GenerationTaskConfig",
    "HeadConfig",
    "ImageTaskConfig",
    "OutputConfig",
    "RunConfig",
    "Section",
    "StrategyCheck",
    "StrategyConfig",
    "TaskConfig",
    "TokenTaskConfig",
    "TrackingConfig",
    "TrainingConfig",
    "build_config",
    "deep_merge",
    "explain",
    "load_config",
    "parse_overrides",
    "register_strategy_check",
]
