"""A plan's stages (gradual unfreezing): when each begins, and a fresh optimizer and warmup on entering one."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from transferkit.config import TrainingConfig
from transferkit.strategies.base import Stage, StrategyPlan
from transferkit.training import embedding_grads
from transferkit.training.optim import build_optimizer, build_scheduler


def stage_starts(stages: list[Stage], steps_per_epoch: int) -> list[int]:
    """The optimizer step at which each stage begins."""
    return [int(round(s.start_epoch * steps_per_epoch)) for s in stages]


class Stages:
    """The plan's stages, one ``"train"`` stage for a plan without any, and the step boundaries between them."""

    def __init__(
        self,
        plan: StrategyPlan,
        steps_per_epoch: int,
        total_steps: int,
        cfg: TrainingConfig,
        accelerator: Accelerator,
        model: torch.nn.Module | None = None,
    ) -> None:
        self.stages = plan.stages or [Stage("train", 0.0, lambda: plan.param_groups)]
        self.starts = stage_starts(self.stages, steps_per_epoch) + [total_steps]
        self.total_steps = total_steps
        self.cfg = cfg
        self.accelerator = accelerator
        self.model = model  # what trains: embeddings made trainable by a stage get row gradients

    def __len__(self) -> int:
        return len(self.stages)

    def name(self, i: int) -> str:
        return self.stages[i].name

    def enter(self, i: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """Sets stage ``i``'s trainable set; returns its (prepared) optimizer and its scheduler."""
        groups = self.stages[i].enter()
        if self.model is not None:
            embedding_grads.install(
                self.model, self.cfg.row_embedding_grads, self.accelerator.num_processes > 1
            )
        optimizer = build_optimizer(groups)
        # the scheduler is stepped by hand once per optimizer step: accelerate's prepared scheduler steps
        # once per process, which would run the schedule num_processes times too fast
        scheduler = build_scheduler(optimizer, self.cfg, max(1, self.starts[i + 1] - self.starts[i]))
        return self.accelerator.prepare(optimizer), scheduler

    def replay(self, stage: int) -> None:
        """Enters the stages before ``stage`` again (deterministic), as a resumed run found them."""
        for i in range(stage):
            self.stages[i].enter()

    def next_due(self, stage: int, step: int) -> bool:
        """Whether the stage after ``stage`` begins at ``step`` (never on the last step)."""
        return stage + 1 < len(self.stages) and self.starts[stage + 1] <= step < self.total_steps
