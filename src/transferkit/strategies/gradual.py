"""``gradual``: gradual unfreezing (ULMFiT). The head trains first, then one more layer group from the top
every ``every_epochs`` epochs, each stage with a fresh optimizer and warmup. Combine with layer-wise
learning rates through ``layer_decay``.

A linear head starts from the linear probe fitted on frozen features (the head stage then begins converged,
as ULMFiT's classifier stage intends) and the loop evaluates that start first.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from transferkit.backbones.contract import layer_groups
from transferkit.config import TrainingConfig
from transferkit.strategies.base import (
    Stage,
    StrategyPlan,
    StrategySettings,
    layerwise_groups,
    num_groups,
    register_strategy,
    set_trainable,
)


class GradualSettings(StrategySettings):
    every_epochs: float = Field(
        1.0, gt=0, description="Epochs between unfreezing one more layer group (fractions allowed)."
    )
    max_groups: int | None = Field(
        None,
        gt=0,
        description="Stop unfreezing after this many groups (None: all the way to the embeddings).",
    )
    layer_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Layer-wise learning-rate decay: group lr = lr * layer_decay ** depth_from_top.",
    )


def apply(model: nn.Module, settings: GradualSettings, training: TrainingConfig) -> StrategyPlan:

    n = num_groups(model)
    limit = min(settings.max_groups or n, n)
    frozen: list[nn.Module] = []  # the plan's frozen_modules, updated in place by each stage (eval mode)

    def stage(j: int):
        top = list(range(n - j, n))  # j top groups unfrozen

        def enter():
            set_trainable(model, top)
            frozen[:] = [m for _, mods in layer_groups(model.backbone)[: n - j] for m in mods]
            return layerwise_groups(model, top, training, settings.layer_decay, frozen_trunk=j == 0)

        return Stage("head" if j == 0 else f"top-{j}", j * settings.every_epochs, enter)

    stages = [stage(j) for j in range(limit + 1)]
    groups = stages[0].enter()
    return StrategyPlan(
        param_groups=groups,
        stages=stages,
        frozen_modules=frozen,
        notes=[f"unfreezes one of {n} groups every {settings.every_epochs} epochs"],
        probe_init=model.config.head_kind == "linear",
    )


register_strategy(
    "gradual",
    GradualSettings,
    apply,
    "gradual unfreezing: head first, then one more layer group every N epochs, fresh warmup each stage",
)
