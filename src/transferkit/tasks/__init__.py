"""The tasks: text classification, token classification, image classification and generation, one package
each, every one registered as a :class:`~transferkit.tasks.registry.TaskSpec` by one call at the end of its
package's ``__init__.py``.

A task package provides ``fit(cfg, frames, resume) -> RunResult`` and ``load(run_dir, batch_size) ->
predictor`` (the predictor keeps :class:`transferkit.predictors.BasePredictor`); the run folder's manifest
(``labels.json``) records ``"task"``, and everything downstream (load, predict, evaluate, serve, export)
reads the spec of that task. Adding a task: see CONTRIBUTING.md ("Adding a task").

The packages import their heavy code inside ``fit`` / ``load``, so ``import transferkit`` stays light.
"""

from __future__ import annotations

from transferkit.tasks.registry import TASKS, TaskSpec, register_task

from transferkit.tasks import generation as _generation  # noqa: F401, E402  isort: skip
from transferkit.tasks import image_classification as _image_classification  # noqa: F401, E402  isort: skip
from transferkit.tasks import text_classification as _text_classification  # noqa: F401, E402  isort: skip
from transferkit.tasks import token_classification as _token_classification  # noqa: F401, E402  isort: skip


def task_spec(name: str) -> TaskSpec:
    """The spec of task ``name``.

    Raises:
        RegistryError: for an unknown task (close names suggested).
    """
    return TASKS.get(name)


def task_names() -> list[str]:
    return TASKS.names()


__all__ = ["TASKS", "TaskSpec", "register_task", "task_names", "task_spec"]


def use_default_backbone(cfg, spec: TaskSpec) -> None:
    """A task whose inputs the default (text) backbone cannot read gets its own default backbone when
    ``backbone.name`` was not given (images: efficientnet-lite0; generation: smollm2-135m)."""
    if spec.default_backbone and "name" not in cfg.backbone.model_fields_set:
        cfg.backbone.name = spec.default_backbone


def fit_task(cfg, frames=None, resume: bool = False):
    """Runs ``cfg`` through its task's fit, then experiment tracking: the one dispatch of every fit
    (:func:`transferkit.fit` and each ``transferkit compare`` cell)."""
    from transferkit.tracking import log_run

    spec = task_spec(cfg.task.type)
    spec.check_strategy(cfg.strategy.name)
    use_default_backbone(cfg, spec)
    result = spec.fit(cfg, frames, resume)
    log_run(cfg, result.run_dir, result.metrics)  # nothing unless tracking.mlflow is set; never raises
    return result
