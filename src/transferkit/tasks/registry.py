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
        main_metric: The test metric ``transferkit compare`` plots and ranks by.
        higher_is_better: Direction of ``main_metric``.
        budget_unit: What a label budget counts: "per class" (drawn stratified by ``label_column``),
            "sentences" or "examples".
        label_column: Column of a catalog frame holding the class (stratified budgets); None: none.
        frame_overrides: Settings that make a catalog data set's frames readable as DataFrames.
        classical: ``(name, baseline(frames) -> result)``: the from-scratch classical baseline of
            ``compare`` (see :mod:`transferkit.evaluation.baselines` for the result), or None.
        classical_note: Why there is no classical baseline, when there is none.
        default_backbone: The backbone used when ``backbone.name`` is not given (None: the config default).
        cover: ``cover(frame) -> [set of classes per row]`` for budgets without a class per example: the
            first rows of every budget draw hold each class once (NER: entity types), so small budgets
            still see every type the validation set has.
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
    main_metric: str = "f1_macro"
    higher_is_better: bool = True
    budget_unit: Literal["per class", "sentences", "examples"] = "per class"
    label_column: str | None = "label"
    frame_overrides: tuple[str, ...] = ()
    classical: tuple[str, Callable[..., dict]] | None = None
    classical_note: str | None = None
    default_backbone: str | None = None
    cover: Callable[[Any], list[set[str]]] | None = None

    def check_strategy(self, name: str) -> None:
        """Raises ConfigError naming why, when ``name`` does not apply to this task."""
        if name in self.refused_strategies:
            raise ConfigError(f"strategy.name: {name!r} {self.refused_strategies[name]}")


TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Registers a task (refuses duplicates and malformed names, as every registry does)."""
    return TASKS.register(spec.name, spec, spec.description)
