"""``top-k``: the top k layer groups and the head train; the rest stays frozen.

When nothing below the cut is random (frozen layers run in eval mode, no augmentation), the output of the
frozen bottom is a pure function of the input: it is computed once and cached, and each epoch runs only
the top k groups. Combine with layer-wise learning rates through ``layer_decay``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from torch import nn

from transferkit.backbones.contract import layer_groups
from transferkit.config import TrainingConfig
from transferkit.strategies.base import (
    StrategyPlan,
    StrategySettings,
    layerwise_groups,
    num_groups,
    register_strategy,
    set_trainable,
    yaml_off,
)


class TopKSettings(StrategySettings):
    k: int = Field(
        2,
        gt=0,
        description="How many of the top layer groups train (a transformer block is a group; the embeddings are the bottom group).",
    )
    cache: Literal["auto", "memory", "off"] = Field(
        "auto", description="Cache the frozen bottom's output (auto/memory) or re-run it every step (off)."
    )
    layer_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Layer-wise learning-rate decay: group lr = lr * layer_decay ** depth_from_top.",
    )

    _cache_off = field_validator("cache", mode="before")(yaml_off)


def apply(model: nn.Module, settings: TopKSettings, training: TrainingConfig) -> StrategyPlan:

    n = num_groups(model)
    k = min(settings.k, n)
    cut = n - k  # groups [0, cut) are frozen
    top = list(range(cut, n))
    set_trainable(model, top)
    groups = layer_groups(model.backbone)
    frozen = [m for _, mods in groups[:cut] for m in mods]
    cache = "hidden" if settings.cache != "off" and cut > 0 else None
    return StrategyPlan(
        param_groups=layerwise_groups(model, top, training, settings.layer_decay),
        cache=cache,
        cache_location="memory",
        frozen_modules=frozen,
        cut=cut,
        notes=[f"top {k} of {n} layer groups train"],
    )


register_strategy(
    "top-k",
    TopKSettings,
    apply,
    "the top k layer groups and the head train; the frozen bottom's output is cached",
)
