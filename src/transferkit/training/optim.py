"""Optimizer and learning-rate schedule."""

from __future__ import annotations

from typing import Any

import torch
from transformers import get_scheduler

from transferkit.config import TrainingConfig


def build_optimizer(param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """AdamW over the strategy's groups (decay already split from no-decay); fused kernel where available."""
    try:
        return torch.optim.AdamW(param_groups, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(param_groups)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainingConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup over ``warmup_ratio`` of the steps, then linear, cosine or constant."""
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[cfg.scheduler]
    warmup = int(round(cfg.warmup_ratio * total_steps))
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))
