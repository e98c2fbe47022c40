"""``lora``: low-rank updates ``B @ A`` beside the frozen trunk's linear layers, merged on export.

Example:
    >>> run = transferkit.fit(dataset="rotten_tomatoes", strategy="lora", overrides=["strategy.r=16"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from transferkit.config import TrainingConfig
from transferkit.strategies.base import StrategyPlan, register_strategy
from transferkit.strategies.peft.common import _adapt, _AdapterSettings, _fused_field, _note, _plan
from transferkit.strategies.peft.targets import fan_in_fan_out, resolve_targets


class LoraSettings(_AdapterSettings):
    r: int = Field(8, ge=1, description="Rank of each low-rank update B @ A.")
    alpha: float = Field(16.0, gt=0, description="Scale of the update: alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the adapter's input.")
    fused: bool = _fused_field()
    bias: Literal["none", "all", "lora_only"] = Field(
        "none",
        description="Biases that train too: none, all (the backbone's), lora_only (the adapted layers').",
    )


def apply_lora(model: nn.Module, settings: LoraSettings, training: TrainingConfig) -> StrategyPlan:
    # peft, scipy, psutil load on first use, not when lora is imported
    from peft import LoraConfig

    targets = resolve_targets(model.backbone, settings, "lora")
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        bias=settings.bias,
        target_modules=targets.names,
        fan_in_fan_out=fan_in_fan_out(model.backbone, targets.names),
    )
    peft_model, groups = _adapt(model, config, training, settings.lr_multiplier, fused=settings.fused)
    lr = training.learning_rate * settings.lr_multiplier
    note = _note(f"LoRA r={settings.r} alpha={settings.alpha:g}", targets, lr)
    return _plan(model, peft_model, groups, [note], merge=settings.merge)


register_strategy("lora", LoraSettings, apply_lora, "low-rank adapters in the frozen trunk, merged on export")
