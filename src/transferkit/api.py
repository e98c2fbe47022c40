"""The public Python API: ``fit()`` and ``load()``. Each task's recipe lives in its package under
:mod:`transferkit.tasks`; ``fit`` hands the run to the spec of ``task.type``.

Example:
    >>> import transferkit
    >>> run = transferkit.fit(dataset="rotten_tomatoes", strategy="head", epochs=1)  # doctest: +SKIP
    >>> run.metrics["test"]["accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

import transferkit.strategies  # noqa: F401  registers the strategy.* check that load_config runs
from transferkit.artifacts import DATAFRAME, RunResult
from transferkit.config import RunConfig, load_config
from transferkit.errors import RunError

log = logging.getLogger("transferkit")

__all__ = ["RunResult", "fit", "load"]


def fit(
    config: RunConfig | str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    frames: dict[str, pd.DataFrame] | None = None,
    resume: str | Path | None = None,
    **quick,
) -> RunResult:
    """Fine-tunes a backbone on labelled examples, evaluates it and writes a run folder.

    Args:
        config: A RunConfig, a YAML path, or None for defaults.
        overrides: ``key.path=value`` strings.
        frames: pandas DataFrames for "train" / "validation" / "test" instead of files.
        resume: A run folder interrupted during training: continue from its newest checkpoint with its
            saved configuration (the result equals an uninterrupted run's). A finished run (its
            ``metrics.json`` exists) is returned as it is, with a warning.
        **quick: Shortcuts: dataset, train, validation, test, backbone, strategy, epochs, seed, output, task.

    Returns:
        The run folder and its metrics.

    Raises:
        TransferkitError: for any configuration, data or run-folder mistake (one line, what and where).
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise RunError(f"{run_dir}: not a run folder (no config.yaml); nothing to resume")
        if (run_dir / "metrics.json").is_file():  # written last: the run is complete, whenever it was killed
            # nothing to do, and not an error: a retry loop around `fit --resume` ends (as compare skips cells)
            log.warning(f"{run_dir}: this run already finished; nothing to resume, nothing changed")
            return RunResult(run_dir, json.loads((run_dir / "metrics.json").read_text()))
        config = load_config(run_dir / "config.yaml", list(overrides or []))
        config.output.dir = str(run_dir)
        return _fit(config, frames, resume=True)
    if not isinstance(config, RunConfig):
        shortcuts = {
            "dataset": "data.dataset", "train": "data.train", "validation": "data.validation", "test": "data.test",
            "backbone": "backbone.name", "strategy": "strategy.name", "epochs": "training.epochs",
            "seed": "training.seed", "output": "output.dir", "task": "task.type",
        }  # fmt: skip
        extra = [f"{shortcuts[k]}={v}" for k, v in quick.items() if v is not None]
        if frames and "train" in frames and not any(o.startswith("data.") for o in extra):
            extra.append(f"data.train={DATAFRAME}")
        config = load_config(config, extra + list(overrides or []))
    return _fit(config, frames)


def load(run_dir: str | Path, batch_size: int = 64, precision: str = "run"):
    """Loads a finished run (or a folder written by ``transferkit export`` / ``compress``) for prediction.

    Args:
        run_dir: The run folder (or exported folder).
        batch_size: Examples per forward pass.
        precision: ``run`` (the precision the run trained and evaluated at: predictions match its metrics),
            ``auto`` (bf16 where this machine has native bf16), ``fp32``, ``bf16`` or ``fp16`` (CUDA).

    Returns:
        The task's predictor: ``predict``, ``evaluate``, ``predict_file`` (see each task's predictor).

    Example:
        >>> model = transferkit.load("runs/rotten_tomatoes-full-20261123-101500")  # doctest: +SKIP
        >>> model.predict(["a gripping, beautifully shot film"])  # doctest: +SKIP
        [{'label': 'fresh', 'score': 0.97, 'scores': {'fresh': 0.97, 'rotten': 0.03}}]
    """
    from transferkit.compression.export import load_folder

    return load_folder(run_dir, batch_size, precision)


def _fit(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None, resume: bool = False) -> RunResult:
    """Hands the run to its task's module (see :mod:`transferkit.tasks`), then to experiment tracking."""
    from transferkit.tasks import fit_task

    return fit_task(cfg, frames, resume)
