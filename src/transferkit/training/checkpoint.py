"""Checkpoints that survive a kill or a power cut, and that load without running code.

A checkpoint ``step-N/`` holds the trainable weights (``weights.safetensors``), the best evaluation's weights
(``best.safetensors``, optional), the optimizer and scheduler states, every RNG state and the loop's own
state (step, epoch, position in the epoch, strategy stage, best metric, patience, history) in ``state.pt``,
and last ``COMPLETE.json``: the size and sha256 of every other file. It is written to ``step-N.partial/``,
fsynced and renamed (:func:`~transferkit.utils.io.publish_folder`), and the last N are kept. A folder still
named ``.partial`` (a write cut short) is never loaded; :func:`checkpoint_problem` says why any other one
must not be (a file cut short or changed after the write, a missing marker).

``state.pt`` holds only tensors and plain data (dicts, lists, tuples, numbers, strings, None) and is read
with ``torch.load(weights_only=True)``: a shared or downloaded run folder cannot run code on resume.

Checkpoints of earlier versions have no ``COMPLETE.json``. One is accepted when all its files load, its
``state.pt`` with ``weights_only=True`` and only the NumPy array types of its NumPy RNG state allowed, and
skipped otherwise. A checkpoint of this version without its marker is skipped: the marker is written last,
so the folder was altered or copied incompletely.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from transferkit.errors import RunError
from transferkit.utils.io import publish_folder

STATE_FILE = "state.pt"
WEIGHTS_FILE = "weights.safetensors"
BEST_FILE = "best.safetensors"
MARKER = "COMPLETE.json"
FORMAT = 2  # in state.pt and the marker; earlier versions wrote neither
_STEP = re.compile(r"^step-(\d+)$")
_STATE_KEYS = {"optimizer", "scheduler", "rng", "loop"}

# What an earlier version's state.pt needs beyond plain data: np.random.get_state() pickles a uint32 ndarray,
# rebuilt by numpy's _reconstruct (numpy.core in NumPy 1, numpy._core in NumPy 2). Nothing else is allowed.
_reconstruct = np.zeros(1).__reduce__()[0]
_LEGACY_GLOBALS = [
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),  # the dtype's own class, whose state the unpickler sets
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
    (_reconstruct, "numpy._core.multiarray._reconstruct"),
]


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states, as plain data and tensors (loadable with ``weights_only``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]  # keys: (624,)
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores :func:`rng_state` (or an earlier version's, whose NumPy keys are an ndarray)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def save_checkpoint(
    folder: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor] | None,
    optimizer,
    scheduler,
    loop_state: dict,
    keep: int,
) -> Path:
    """Writes ``folder/step-N`` atomically and durably, and prunes all but the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    with publish_folder(final) as tmp:  # step-N.partial until complete; replaces a step-N of an earlier try
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS_FILE))
        if best is not None:
            save_file({k: v.contiguous().cpu() for k, v in best.items()}, str(tmp / BEST_FILE))
        state = {
            "format": FORMAT,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "loop": loop_state,
        }
        torch.save(state, tmp / STATE_FILE)
        write_marker(tmp, step)  # last: a folder with a valid marker has every file whole
    kept = {p.name for p in list_checkpoints(folder)[-keep:]}
    # every other step-N folder goes, including one left half-deleted by a kill during an earlier prune
    for old in folder.iterdir():
        if old.is_dir() and _STEP.match(old.name) and old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def write_marker(folder: Path, step: int) -> Path:
    """Writes ``folder/COMPLETE.json``: the size and sha256 of every other file in ``folder``."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MARKER
    }
    marker = folder / MARKER
    marker.write_text(json.dumps({"format": FORMAT, "step": step, "files": files}, indent=2) + "\n")
    return marker


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders that were published (not ``.partial``, with a ``state.pt``), oldest first.

    Their files are not checked here; see :func:`checkpoint_problem`.
    """
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _STEP.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP.match(p.name).group(1)))


def checkpoint_problem(path: Path) -> str | None:
    """Why checkpoint ``path`` must not be resumed from (a short phrase), or None when it is sound.

    With a ``COMPLETE.json``, every file it lists must be there with its size and sha256. Without one (an
    earlier version's checkpoint), every file must load, ``state.pt`` with ``weights_only=True``.
    """
    if (path / MARKER).is_file():
        return _marker_problem(path)
    try:
        load_file(str(path / WEIGHTS_FILE))
        if (path / BEST_FILE).is_file():
            load_file(str(path / BEST_FILE))
        state = _load_state(path / STATE_FILE, legacy=True)
    except pickle.UnpicklingError as e:
        return _refusal(e)
    except Exception as e:  # noqa: BLE001  (safetensors / zip / EOF errors of a file cut short)
        first = (str(e).splitlines() or [""])[0][:120]
        return f"no {MARKER}, and a file does not load ({type(e).__name__}: {first})"
    if not isinstance(state, dict) or not state.keys() >= _STATE_KEYS:
        return f"{STATE_FILE} is not a checkpoint's state"
    if "format" in state:
        return f"{MARKER} missing (it is written last: the folder was altered or copied incompletely)"
    return None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict]:
    """(weights, best weights or None, state dict with optimizer / scheduler / rng / loop).

    Raises:
        RunError: if ``state.pt`` holds anything but tensors and plain data (it is not unpickled).
    """
    weights = load_file(str(path / WEIGHTS_FILE))
    best = load_file(str(path / BEST_FILE)) if (path / BEST_FILE).is_file() else None
    try:
        state = _load_state(path / STATE_FILE, legacy=not (path / MARKER).is_file())
    except pickle.UnpicklingError as e:
        raise RunError(f"{path}: {_refusal(e)}") from None
    return weights, best, state


def _load_state(file: Path, legacy: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; an earlier version's file may also hold NumPy arrays."""
    with torch.serialization.safe_globals(_LEGACY_GLOBALS if legacy else []):
        return torch.load(file, map_location="cpu", weights_only=True)


def _refusal(error: pickle.UnpicklingError) -> str:
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    what = f"it refers to {found.group(1)}" if found else "it is not plain data"
    return f"{STATE_FILE} refused ({what}): a checkpoint holds only tensors and plain data"


def _marker_problem(path: Path) -> str | None:
    try:
        listed = json.loads((path / MARKER).read_text())["files"]
        expected = {name: (int(f["bytes"]), str(f["sha256"])) for name, f in listed.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MARKER} is unreadable"
    for name in (WEIGHTS_FILE, STATE_FILE):
        if name not in expected:
            return f"{MARKER} does not list {name}"
    for name, (size, digest) in expected.items():
        file = path / name
        if Path(name).name != name or not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {MARKER} says {size} (cut short?)"
        if _sha256(file) != digest:
            return f"{name} does not match its sha256 in {MARKER}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
