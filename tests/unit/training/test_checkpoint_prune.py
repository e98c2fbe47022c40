"""Pruning old checkpoints also removes folders a kill left half-deleted."""

from __future__ import annotations

from pathlib import Path

import torch

from transferkit.training.checkpoint import list_checkpoints, save_checkpoint


class _State:
    def state_dict(self) -> dict:
        return {}


def test_prune_removes_half_deleted_checkpoints(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    weights = {"w": torch.zeros(2)}
    save_checkpoint(folder, 1, weights, None, _State(), _State(), {}, keep=2)
    (folder / "step-00000001" / "state.pt").unlink()  # a kill in the middle of an earlier rmtree
    for step in (2, 3, 4):
        save_checkpoint(folder, step, weights, None, _State(), _State(), {}, keep=2)
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000003", "step-00000004"]
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000003", "step-00000004"]
