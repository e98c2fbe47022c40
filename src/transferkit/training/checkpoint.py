"""Checkpoints that survive a kill: written to ``step-N.partial/``, renamed when complete, last N kept.

A checkpoint holds the trainable weights, optimizer and scheduler states, every RNG state and the loop's
own state (step, epoch, position in the epoch, strategy stage, best metric, patience, history). A folder
still named ``.partial`` (a write cut short) is never loaded.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from transferkit.utils.io import publish_folder

STATE_FILE = "state.pt"
_STEP = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
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
    """Writes ``folder/step-N`` atomically and prunes all but the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    with publish_folder(final) as tmp:  # step-N.partial until complete; replaces a step-N of an earlier try
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / "weights.safetensors")
        )
        if best is not None:
            save_file({k: v.contiguous().cpu() for k, v in best.items()}, str(tmp / "best.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "loop": loop_state,
            },
            tmp / STATE_FILE,
        )
    kept = {p.name for p in list_checkpoints(folder)[-keep:]}
    # every other step-N folder goes, including one left half-deleted by a kill during an earlier prune
    for old in folder.iterdir():
        if old.is_dir() and _STEP.match(old.name) and old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _STEP.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP.match(p.name).group(1)))


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict]:
    """(weights, best weights or None, state dict with optimizer / scheduler / rng / loop)."""
    weights = load_file(str(path / "weights.safetensors"))
    best = load_file(str(path / "best.safetensors")) if (path / "best.safetensors").is_file() else None
    state = torch.load(path / STATE_FILE, weights_only=False)
    return weights, best, state
