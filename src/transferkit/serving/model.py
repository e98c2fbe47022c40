"""The served model: load and warm a run, describe it, and swap in a new version without dropping requests."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import transferkit
from transferkit import __version__
from transferkit.errors import RunError
from transferkit.serving.adapters import TaskAdapter, adapter_for
from transferkit.serving.batching import MicroBatcher
from transferkit.serving.run_copy import private_copy
from transferkit.serving.security import file_inside
from transferkit.serving.settings import ServeSettings

log = logging.getLogger("transferkit.serving")


class TaskMismatch(RunError):
    """A reload would serve another task than the running one (its request schema differs)."""


def default_loader(run_dir: str | Path):
    """``transferkit.load``: dispatches on the run's task (and on exported folders)."""

    return transferkit.load(run_dir)


@dataclass
class LoadedModel:
    """One loaded, warmed model version and the batcher that feeds it."""

    predictor: Any
    adapter: TaskAdapter
    batcher: MicroBatcher
    run_dir: Path
    generation: int
    loaded_at: str
    warmup_seconds: float
    info: dict = field(default_factory=dict)
    source: Path | None = None  # the folder's real path, resolved before loading: what a reload loads again
    root: Path | None = None  # the reload root it was read beneath (through a private copy), if any
    confusion_png: bytes | None = None  # RUN/confusion_matrix.png, read with the model (served from memory)

    @property
    def version(self) -> str:
        """``<run folder name>#<load number>``: changes on every reload."""
        return f"{self.run_dir.name}#{self.generation}"

    def describe(self) -> dict:
        """The body of ``GET /v1/model``."""

        p = self.predictor
        return {
            "task": p.task,
            "labels": list(getattr(p, "labels", []) or []),
            "backbone": self.info.get("backbone"),
            "strategy": self.info.get("strategy"),
            "problem": getattr(p, "problem", None),
            "precision": getattr(getattr(p, "precision", None), "name", None) or "fp32",
            "metrics": getattr(p, "metrics", {}) or {},
            "version": self.version,
            "run": self.run_dir.name,
            "loaded_at": self.loaded_at,
            "transferkit_version": __version__,
        }


def set_precision(predictor: Any, precision: str) -> None:
    """Runs a PyTorch predictor's forward passes at ``precision`` (``run`` keeps what ``load`` chose: the
    run's own). ONNX predictors (exported folders) have no ``precision`` and run as exported."""
    if precision == "run" or not hasattr(predictor, "precision") or getattr(predictor, "session", None):
        return
    # torch, numpy load on first use, not when model is imported
    from transferkit import hardware

    predictor.precision = hardware.resolve_precision(precision)
    log.info("serving precision: %s (%s)", predictor.precision.name, predictor.precision.reason)


def run_info(run_dir: Path, predictor: Any) -> dict:
    """Backbone and strategy of a run: from the predictor if it says, else from ``RUN/config.yaml``."""
    info = {
        "backbone": getattr(predictor, "backbone", None),
        "strategy": getattr(predictor, "strategy", None),
    }
    cfg_file = file_inside(run_dir, "config.yaml")  # a symlink out of the run folder is not read
    if cfg_file is not None:
        try:
            cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            cfg = {}
        cfg = cfg if isinstance(cfg, dict) else {}
        for key in ("backbone", "strategy"):
            part = cfg.get(key)
            info[key] = info[key] or (part.get("name") if isinstance(part, dict) else None)
    return info


def load_model(
    run_dir: str | Path,
    settings: ServeSettings,
    generation: int,
    loader: Callable[[str | Path], Any] = default_loader,
    metrics=None,
    root: Path | None = None,
) -> LoadedModel:
    """Loads a run, runs one warm-up prediction and builds its (not yet started) batcher. Blocking.

    With ``root`` (a reload under the reload root), ``run_dir`` is the resolved folder that was checked to
    lie under it, and the loader reads only a private copy of it made without following any link (see
    :mod:`transferkit.serving.run_copy`); without, the loader reads ``run_dir`` itself (the served folder).

    Raises:
        RunError: for a missing or unfinished run folder (from the loader).
        RegistryError: for a task no adapter serves.
        NotAllowed: a link under ``root`` where the checked folder was (a swap since the check).
    """
    run_dir = Path(run_dir)
    if root is None:
        source = Path(os.path.realpath(run_dir))  # resolved before the loader reads it, not after
        model = _load(run_dir, run_dir, settings, generation, loader, metrics)
        model.source = source
        return model
    with private_copy(root, run_dir) as copy:
        model = _load(copy, run_dir, settings, generation, loader, metrics)
    model.source, model.root = run_dir, root
    return model


def _load(read_from: Path, run_dir: Path, settings, generation, loader, metrics) -> LoadedModel:
    """:func:`load_model` from the folder ``read_from`` (``run_dir`` or a private copy of it)."""
    predictor = loader(read_from)
    set_precision(predictor, settings.precision)
    adapter = adapter_for(predictor.task)
    adapter.configure(predictor)
    start = time.perf_counter()
    out = predictor.predict(adapter.warmup_inputs())
    if len(out) != len(adapter.warmup_inputs()):
        raise RunError(f"{run_dir}: the predictor returned {len(out)} outputs for one warm-up input")
    warm = time.perf_counter() - start
    batcher = MicroBatcher(
        predictor.predict,
        settings.max_batch_size,
        settings.max_wait_ms,
        settings.max_queue,
        on_batch=metrics.observe_batch if metrics else None,
        on_queue=metrics.queue_depth.set if metrics else None,
        max_cost=settings.max_queue_bytes,
    )
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    info = run_info(read_from, predictor)
    model = LoadedModel(predictor, adapter, batcher, run_dir, generation, now, warm, info)
    model.confusion_png = read_plot(read_from, "confusion_matrix.png")
    return model


MAX_PLOT_BYTES = 8 << 20  # a confusion matrix PNG is tens of kB; a bigger file is not a plot we wrote


def read_plot(folder: Path, name: str) -> bytes | None:
    """The bytes of ``folder/name`` if it is a file inside ``folder`` (no link out of it) and not over
    :data:`MAX_PLOT_BYTES`; read once, at load time, so a later swap of the file changes nothing served."""
    path = file_inside(folder, name)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PLOT_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_PLOT_BYTES else None


def beneath(root: Path, folder: Path) -> bool:
    """Whether the resolved path ``folder`` is the real ``root`` or under it (compared as paths only:
    ``folder`` is not looked up again, so a link placed there since it was resolved changes nothing)."""
    real_root = Path(os.path.realpath(root))
    return folder == real_root or real_root in folder.parents


class ModelSlot:
    """Holds the current model; :meth:`reload` loads the next one beside it and swaps only once it is warm.

    A request takes ``slot.current`` and submits to its batcher in one step with no ``await`` between, so
    every request lands on a batcher that is still open; the old batcher finishes its queue after the swap.
    """

    def __init__(
        self, settings: ServeSettings, loader: Callable[[str | Path], Any] = default_loader, metrics=None
    ):
        self.settings = settings
        self.loader = loader
        self.metrics = metrics
        self.current: LoadedModel | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    async def start(self, run_dir: str | Path) -> LoadedModel:
        """Loads the first model (in a thread) and starts its batcher."""
        async with self._lock:
            self._generation += 1
            model = await asyncio.to_thread(
                load_model, run_dir, self.settings, self._generation, self.loader, self.metrics
            )
            model.batcher.start()
            self.current = model
            log.info("serving %s (%s), warm-up %.2f s", model.run_dir, model.version, model.warmup_seconds)
            return model

    async def reload(self, run_dir: str | Path | None = None, root: Path | None = None) -> LoadedModel:
        """Loads ``run_dir`` (default: the current run folder again), swaps it in, drains the old one.

        With ``root`` (``POST /admin/reload``), a folder under it (``run_dir``: resolved and checked; the
        current one: its real path when it was loaded) is read from a private copy made without following a
        link (see :func:`load_model`); a current folder outside it (the served one) is read as it is. The
        current folder, reloaded without ``root`` (SIGHUP), is read the way it was read the last time.

        Raises:
            RunError: if the new run is of another task than the one being served (restart instead).
            NotAllowed: a link under ``root`` where the folder was checked to be.
        """
        async with self._lock:
            old = self.current
            target = Path(run_dir) if run_dir is not None else old.source
            if run_dir is None and root is None:
                root = old.root  # a folder that came through the reload root is read through it again
            guard = root if root is not None and beneath(root, target) else None
            model = await asyncio.to_thread(
                load_model, target, self.settings, self._generation + 1, self.loader, self.metrics, guard
            )
            if model.predictor.task != old.predictor.task:
                raise TaskMismatch(
                    f"a {model.predictor.task} model cannot replace the {old.predictor.task} model "
                    "being served (its request schema differs); start a new server for it"
                )
            self._generation += 1
            model.batcher.start()
            self.current = model  # new requests go to the new model from here on
            log.info("reloaded %s (%s), warm-up %.2f s", model.run_dir, model.version, model.warmup_seconds)
            await old.batcher.close()  # requests already queued on the old model still finish
            return model

    async def close(self) -> None:
        """Finishes every queued request (graceful shutdown)."""
        if self.current is not None:
            await self.current.batcher.close()


__all__ = [
    "LoadedModel",
    "ModelSlot",
    "TaskMismatch",
    "beneath",
    "default_loader",
    "load_model",
    "run_info",
]
