"""The task registry: one :class:`TaskSpec` per task, registered by one call at the end of its package.

Everything that differs between tasks and is read outside the task's own package is a field here: the CLI,
serving, export and compress ask the spec instead of comparing task names. Task packages stay light to import
(their heavy code lives in their ``fit.py`` / predictor modules and is imported when a run needs it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from transferkit.errors import ConfigError
from transferkit.registry import Registry

Inputs = Literal["text", "tokens", "image", "prompt"]


@dataclass(frozen=True)
class TaskSpec:
    """A task, as every entry point sees it.

    Attributes:
        name: ``task.type`` in the config (``--task``).
        description: One line for ``transferkit tasks``.
        fit: ``fit(cfg, frames, resume) -> RunResult``: train, evaluate and write the run folder.
        load: ``load(run_dir, batch_size) -> predictor`` (see :class:`transferkit.predictors.BasePredictor`).
        inputs: What ``predict`` takes: texts, token lists / raw texts (entity spans out), images or prompts.
        metric_keys: Columns of the metrics table the CLI prints after ``fit`` and ``evaluate``.
        config_section: The ``RunConfig`` section holding the task's own settings, if any.
        onnx_exporter: Module with ``export_onnx`` / ``load_onnx`` for ``transferkit export --format onnx``.
        compressible: ``transferkit compress`` (int8, pruning, distillation) applies.
        refused_strategies: Strategy name -> why it does not apply to this task.
    """

    name: str
    description: str
    fit: Callable[..., Any]
    load: Callable[..., Any]
    inputs: Inputs
    metric_keys: tuple[str, ...]
    config_section: str | None = None
    onnx_exporter: str | None = None
    compressible: bool = False
    refused_strategies: dict[str, str] = field(default_factory=dict)

    def check_strategy(self, name: str) -> None:
        """Raises ConfigError naming why, when ``name`` does not apply to this task."""
        if name in self.refused_strategies:
            raise ConfigError(f"strategy.name: {name!r} {self.refused_strategies[name]}")


TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Registers a task (refuses duplicates and malformed names, as every registry does)."""
    return TASKS.register(spec.name, spec, spec.description)
