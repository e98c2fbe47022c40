"""What ``lora``, ``adalora`` and ``ia3`` share: the settings base, injecting the adapter, the plan.

PEFT injects its layers into ``model.backbone`` in place, so the model keeps its class, ``head``, ``features``
and ``config``. The ``PeftModel`` wrapper lives in the plan (:class:`AdaptedBackbone`), not in the model; it
serves AdaLoRA's rank allocation, saving the adapter in PEFT's format and merging it for export.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field
from safetensors.torch import save_file
from torch import nn

from transferkit.config import TrainingConfig
from transferkit.errors import ConfigError
from transferkit.strategies.base import StrategyPlan, StrategySettings, decay_groups, head_lr
from transferkit.strategies.peft.fused_layers import fuse_lora_layers
from transferkit.strategies.peft.targets import Targets
from transferkit.utils.io import publish_folder

if TYPE_CHECKING:  # peft and transformers load on first use: seconds that every CLI command would pay
    from peft import PeftConfig, PeftModel

    from transferkit.strategies.peft.adalora import AdaLoraSchedule

ADAPTER_INFO = "transferkit.json"  # in RUN/adapter: {"merged": bool}, read by transferkit.load
ADAPTER = "default"  # PEFT's adapter name; the saved adapter folder holds only this one


# ---------------------------------------------------------------------------------------------- settings


def _fused_field():
    return Field(
        True,
        description="Lean linear adapter layers (peft/fused_layers.py): dropout fused into A (a 1-byte mask kept instead of "
        "a dropped copy of the input) and B's output added in place. Less memory, faster; same parameters, files "
        "and math. false: PEFT's forward pass as it is.",
    )


Names = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class _AdapterSettings(StrategySettings):
    target_modules: Literal["auto"] | Names = Field(
        "auto",
        description="Layers to adapt: 'auto' (by backbone family) or module-name suffixes, e.g. [query, value].",
    )
    lr_multiplier: float = Field(10.0, gt=0, description="Adapters train at training.learning_rate x this.")
    merge: bool = Field(
        True,
        description="Write the adapter merged into RUN/model (a plain model, no peft needed; CLI --merge). "
        "false (--no-merge): RUN/model keeps the pretrained trunk and transferkit.load applies RUN/adapter.",
    )


# ---------------------------------------------------------------------------------------------- export and save


@dataclass
class AdaptedBackbone:
    """The PEFT wrapper around ``model.backbone``; merges for export and saves the adapter."""

    peft_model: PeftModel
    backbone: nn.Module
    schedule: AdaLoraSchedule | None = None
    merge: bool = True

    def _check(self, model: nn.Module) -> None:
        if model.backbone is not self.backbone:
            raise ValueError(
                "the model is not the one this plan adapted (export/save the model given to apply)"
            )
        if self.schedule is not None:
            self.schedule.prepare_save()

    def unload_adapter(self, model: nn.Module, in_place: bool = False) -> nn.Module:
        """``model`` with the adapter merged into the backbone weights (``merge=False``: removed, leaving the
        pretrained trunk), as a plain model.

        Args:
            model: The adapted model given to ``apply``.
            in_place: Unload the adapter from ``model`` itself (no copy: the end of a run, where a copy would
                double the peak memory). Otherwise ``model`` is left as it is and a copy is returned.
        """
        # peft, scipy, psutil load on first use, not when common is imported
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._check(model)
        if in_place:
            if self.merge:
                plain = self.peft_model.merge_and_unload(safe_merge=True)
            else:
                plain = self.peft_model.unload()
            if plain is not model.backbone:  # PEFT unloads the wrapped module in place and returns it
                raise RuntimeError("PEFT returned a new backbone instead of unloading in place")
            return model
        base = copy.deepcopy(self.peft_model)
        merged = base.merge_and_unload(safe_merge=True) if self.merge else base.unload()  # a plain backbone
        # Copy the rest of the model around it: deepcopy's memo maps the adapted backbone to the merged one.
        out = copy.deepcopy(model, {id(model.backbone): merged})
        if any(isinstance(m, BaseTunerLayer) for m in out.modules()):
            raise RuntimeError("adapter layers left after merging")
        return out

    def save_extra(self, model: nn.Module, run_dir: Path) -> None:
        """Writes ``run_dir/adapter``: PEFT's adapter files and ``head.safetensors`` (via ``adapter.partial``)."""
        self._check(model)
        with publish_folder(Path(run_dir) / "adapter") as tmp:
            self.peft_model.save_pretrained(str(tmp))
            head = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
            save_file(head, str(tmp / "head.safetensors"), metadata={"format": "pt"})
            (tmp / ADAPTER_INFO).write_text(json.dumps({"merged": self.merge}) + "\n")


# ---------------------------------------------------------------------------------------------- apply


def _adapt(
    model: nn.Module,
    config: PeftConfig,
    training: TrainingConfig,
    lr_multiplier: float,
    decay: bool = True,
    fused: bool = False,
):
    """Injects the adapter into ``model.backbone`` (``fused``: with the lean layers of :mod:`~transferkit.strategies.peft.fused_layers`);
    returns the PEFT wrapper and the optimizer groups."""
    # peft, scipy, psutil load on first use, not when common is imported
    from peft import get_peft_model

    model.requires_grad_(False)
    try:  # injects into model.backbone in place and freezes all of it but the adapter
        peft_model = get_peft_model(model.backbone, config, adapter_name=ADAPTER)
    except ValueError as err:
        raise ConfigError(f"strategy.target_modules: {err}") from err
    if fused:
        fuse_lora_layers(model.backbone)
    model.head.requires_grad_(True)
    lr = training.learning_rate * lr_multiplier
    groups = decay_groups(model, model.backbone.parameters(), lr, training.weight_decay if decay else 0.0)
    groups += decay_groups(model, model.head.parameters(), head_lr(training, True), training.weight_decay)
    return peft_model, groups


def _plan(
    model: nn.Module,
    peft_model: PeftModel,
    groups,
    notes: list[str],
    schedule=None,
    follow_run_length: bool = False,
    merge: bool = True,
) -> StrategyPlan:
    adapted = AdaptedBackbone(peft_model, model.backbone, schedule, merge)
    return StrategyPlan(
        param_groups=groups,
        notes=notes,
        after_backward=schedule.after_backward if schedule else None,
        on_train_begin=schedule.set_total_steps if schedule and follow_run_length else None,
        state_dict=schedule.state_dict if schedule else None,
        load_state_dict=schedule.load_state_dict if schedule else None,
        unload_adapter=adapted.unload_adapter,
        merges_adapter=merge,
        pretrained_view=peft_model.disable_adapter,
        save_extra=adapted.save_extra,
    )


def _note(name: str, targets: Targets, lr: float) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in targets.names})
    return (
        f"{name} on {len(targets.names)} layers ({targets.how}: {', '.join(leaves)}), adapters at lr {lr:g}"
    )
