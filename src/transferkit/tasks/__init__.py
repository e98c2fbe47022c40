"""The task table: every task (text classification, token classification, image classification,
generation) plugs into the same ``fit`` / ``load`` entry points through one module each.

A task module defines:

* ``DESCRIPTION``: one line for ``transferkit tasks`` and the docs.
* ``fit(cfg, frames, resume) -> RunResult``: train, evaluate and write the run folder. The run folder's
  ``labels.json`` records ``"task"``; everything downstream (load, predict, evaluate, serve, export) reads it.
* ``load(run_dir, batch_size) -> predictor``: a predictor with ``task``, ``labels``, ``metrics``,
  ``run_dir`` and ``predict(inputs) -> list`` (JSON-ready, one item per input, in input order: a dict for
  text classification, a list of entity spans for token classification),
  ``evaluate(path, **columns) -> dict`` and ``predict_file(path, output, **columns) -> Path``.

Modules are imported lazily, so ``import transferkit`` never pulls in one task's heavy dependencies.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from transferkit.errors import RegistryError

# task name -> module implementing it (one line per task; keep sorted by name)
TASK_MODULES: dict[str, str] = {
    "generation": "transferkit.tasks.generation",
    "image-classification": "transferkit.tasks.image_classification",
    "text-classification": "transferkit.tasks.text_classification",
    "token-classification": "transferkit.tasks.token_classification",
}


def task_module(name: str) -> ModuleType:
    """The module implementing task ``name``.

    Raises:
        RegistryError: for an unknown task.
    """
    if name not in TASK_MODULES:
        raise RegistryError(f"unknown task {name!r}; known: {', '.join(sorted(TASK_MODULES))}")
    return importlib.import_module(TASK_MODULES[name])


def task_names() -> list[str]:
    return sorted(TASK_MODULES)


__all__ = ["TASK_MODULES", "task_module", "task_names"]
