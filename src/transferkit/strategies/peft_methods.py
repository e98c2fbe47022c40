"""``lora``, ``adalora`` and ``ia3``: the trunk stays frozen; small adapters inside it train, through ``peft``.

PEFT injects its layers into ``model.backbone`` in place, so the model keeps its class, ``head``, ``features``
and ``config``. The ``PeftModel`` wrapper lives in the plan, not in the model; it serves AdaLoRA's rank
allocation, saving the adapter in PEFT's format and merging it for export. A finished run holds::

    RUN/model/     the adapter merged into the backbone: a plain TransferkitForSequenceClassification
                   (``strategy.merge=false`` / ``--no-merge``: the untouched pretrained trunk and the trained
                   head; ``transferkit.load`` then applies the adapter, plain transformers does not)
    RUN/adapter/   adapter_config.json + adapter_model.safetensors (PEFT's format), head.safetensors,
                   transferkit.json (``{"merged": true|false}``)

To put the adapter back on the base backbone: ``PeftModel.from_pretrained(base_backbone, "RUN/adapter")`` and
``head.load_state_dict(safetensors.torch.load_file("RUN/adapter/head.safetensors"))``.

``target_modules: auto`` picks layers by the backbone's ``config.model_type`` (:data:`transferkit.strategies.peft_targets.FAMILIES`), inside the
transformer blocks only (every layer group above the embeddings); an unknown family gets every linear
layer of the blocks, so new text, image or causal-LM backbones need no entry here.

Learning rates: adapters start from zero (LoRA, AdaLoRA) or one (IA3) and are small, so they need a larger
step than full fine-tuning: they train at ``training.learning_rate x lr_multiplier`` (5e-4 for LoRA at the
defaults); the head at :func:`head_lr` for a frozen trunk.

AdaLoRA prunes ranks on a schedule that must know the run's length: ``strategy.total_steps``, else
``training.max_steps``, else the number of steps the loop reports through ``plan.on_train_begin`` before the
first step (see :class:`AdaLoraSchedule`).

Example:
    >>> run = transferkit.fit(dataset="rotten_tomatoes", strategy="lora", overrides=["strategy.r=16"])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import torch
from pydantic import Field, model_validator
from safetensors.torch import save_file
from torch import nn

from transferkit.config import TrainingConfig
from transferkit.errors import ConfigError
from transferkit.strategies.base import (
    StrategyPlan,
    StrategySettings,
    decay_groups,
    head_lr,
    register_strategy,
)
from transferkit.strategies.lora_layers import fuse_lora_layers
from transferkit.strategies.peft_targets import Targets, fan_in_fan_out, resolve_targets

if TYPE_CHECKING:  # peft and transformers load on first use: seconds that every CLI command would pay
    from peft import PeftConfig, PeftModel

log = logging.getLogger("transferkit")

ADAPTER_INFO = "transferkit.json"  # in RUN/adapter: {"merged": bool}, read by transferkit.load
ADAPTER = "default"  # PEFT's adapter name; the saved adapter folder holds only this one
# AdaLoRA's schedule length when neither strategy.total_steps nor training.max_steps is set
FALLBACK_TOTAL_STEPS = 1000


# ---------------------------------------------------------------------------------------------- settings


def _fused_field():
    return Field(
        True,
        description="Lean linear adapter layers (lora_layers): dropout fused into A (a 1-byte mask kept instead of "
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


class LoraSettings(_AdapterSettings):
    r: int = Field(8, ge=1, description="Rank of each low-rank update B @ A.")
    alpha: float = Field(16.0, gt=0, description="Scale of the update: alpha / r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the adapter's input.")
    fused: bool = _fused_field()
    bias: Literal["none", "all", "lora_only"] = Field(
        "none",
        description="Biases that train too: none, all (the backbone's), lora_only (the adapted layers').",
    )


class AdaLoraSettings(_AdapterSettings):
    init_r: int = Field(12, ge=1, description="Starting rank of every adapted layer.")
    target_r: int = Field(4, ge=1, description="Average rank left after pruning (budget: target_r x layers).")
    alpha: float = Field(16.0, gt=0, description="Scale of the update: alpha / init_r.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the adapter's input.")
    fused: bool = _fused_field()
    tinit: float = Field(
        0.1, ge=0, description="Warm-up before pruning: a fraction of the run (<1) or steps."
    )
    tfinal: float = Field(
        0.2, ge=0, description="Last phase, ranks fixed: a fraction of the run (<1) or steps."
    )
    deltaT: int = Field(1, ge=1, description="Steps between two rank re-allocations while pruning.")
    orth_reg_weight: float = Field(0.5, ge=0, description="Penalty keeping the singular vectors orthogonal.")
    total_steps: int | None = Field(
        None,
        gt=0,
        description=f"Steps the schedule spans; None: training.max_steps, else {FALLBACK_TOTAL_STEPS}.",
    )

    @model_validator(mode="after")
    def _schedule(self) -> AdaLoraSettings:
        if self.target_r >= self.init_r:
            raise ValueError("strategy.target_r must be below strategy.init_r (AdaLoRA prunes down to it)")
        if any(v >= 1 and v != int(v) for v in (self.tinit, self.tfinal)):
            raise ValueError(
                "strategy.tinit / tfinal: step counts are whole (fractions of the run are below 1)"
            )
        if self.tinit < 1 and self.tfinal < 1 and self.tinit + self.tfinal >= 1:
            raise ValueError("strategy.tinit + strategy.tfinal must be below 1 (leave a pruning phase)")
        return self


class IA3Settings(_AdapterSettings):
    feedforward_modules: Literal["auto"] | Names = Field(
        "auto",
        description="Targets that are feed-forward layers (IA3 scales their input): 'auto' or suffixes.",
    )
    lr_multiplier: float = Field(
        60.0, gt=0, description="Scales train at training.learning_rate x this (3e-3)."
    )


# ---------------------------------------------------------------------------------------------- AdaLoRA schedule


def schedule_steps(settings: AdaLoraSettings, total: int) -> tuple[int, int]:
    """``(tinit, tfinal)`` in steps; fractions are rounded down, so two summing below 1 leave a pruning phase."""
    tinit, tfinal = (int(v * total) if v < 1 else int(v) for v in (settings.tinit, settings.tfinal))
    if tinit >= total - tfinal:
        raise ConfigError(
            f"strategy.tinit ({tinit} steps) + tfinal ({tfinal}) leave no pruning in {total} steps"
        )
    return tinit, tfinal


class AdaLoraSchedule:
    """Drives AdaLoRA's rank allocation from the loop's ``after_backward`` hook.

    PEFT expects ``update_and_allocate`` after ``optimizer.step()``; the hook runs before it. Importance is
    computed from the same gradients either way, and the pruning mask, which the optimizer step would undo,
    is applied again just before the next forward pass (and before export or saving).
    """

    def __init__(self, peft_model: PeftModel, settings: AdaLoraSettings, total_steps: int):
        self.tuner = peft_model.base_model  # AdaLoraModel: update_and_allocate, rankallocator
        self.backbone = self.tuner.model
        self.config = peft_model.peft_config[ADAPTER]
        self.settings = settings
        self.pending_mask = False
        self.set_total_steps(total_steps)
        backbone = self.backbone

        def before_forward(module: nn.Module, args) -> None:
            if module is backbone:  # deep copies (export) share this function: leave them alone
                self.apply_pending_mask()

        backbone.register_forward_pre_hook(before_forward)

    def set_total_steps(self, total: int) -> None:
        """Sets the schedule length; ``tinit`` / ``tfinal`` given as fractions are resolved against it."""
        tinit, tfinal = schedule_steps(self.settings, total)
        self.config.total_step, self.config.tinit, self.config.tfinal = total, tinit, tfinal

    def after_backward(self, step: int) -> None:
        for _, p in self._adapter_params():  # a layer off the forward path has none; PEFT needs one
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self._add_orthogonality_gradients()
        cfg = self.config
        if cfg.rank_pattern is None and step > cfg.total_step - cfg.tfinal:  # resumed in the last phase
            cfg.rank_pattern = self._pattern_of_weights({})
        self.tuner.update_and_allocate(step)
        masked_now = step >= cfg.total_step - cfg.tfinal or self.tuner.rankallocator.budget_schedule(step)[1]
        self.pending_mask = cfg.rank_pattern is not None and bool(masked_now)

    def state_dict(self) -> dict:
        """The allocator's importance averages, the rank pattern and a pending mask: what a resume needs."""
        alloc = self.tuner.rankallocator
        scores = {
            key: {n: t.detach().clone() for n, t in getattr(alloc, key).items()}
            for key in ("ipt", "exp_avg_ipt", "exp_avg_unc")
        }
        return {**scores, "rank_pattern": self.config.rank_pattern, "pending_mask": self.pending_mask}

    def load_state_dict(self, state: dict) -> None:
        alloc = self.tuner.rankallocator
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            setattr(alloc, key, dict(state[key]))
        self.config.rank_pattern = state["rank_pattern"]
        self.pending_mask = state["pending_mask"]

    def apply_pending_mask(self) -> None:
        if self.pending_mask:
            self.tuner.rankallocator.mask_using_rank_pattern(self.backbone, self.config.rank_pattern)
            self.pending_mask = False

    def _add_orthogonality_gradients(self) -> None:
        """Adds the gradient of AdaLoRA's penalty ``w * mean ||P P^T - I||_F`` over every A and B.

        PEFT adds the penalty to the loss a model returns; our loop computes the loss itself, so the penalty's
        gradient is added here (the same sum, only after the loop's gradient clipping).
        """
        if not self.settings.orth_reg_weight:
            return
        params = [(n, p) for n, p in self._adapter_params() if ".lora_A." in n or ".lora_B." in n]
        with torch.enable_grad():
            terms = []
            for n, p in params:
                cov = p @ p.T if ".lora_A." in n else p.T @ p  # A: (r, in) -> (r, r); B: (out, r) -> (r, r)
                eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
                terms.append(torch.linalg.matrix_norm(cov - eye))
            penalty = self.settings.orth_reg_weight * torch.stack(terms).mean()
            grads = torch.autograd.grad(penalty, [p for _, p in params])
        for (_, p), g in zip(params, grads, strict=True):
            p.grad = g if p.grad is None else p.grad.add_(g)

    def _adapter_params(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.backbone.named_parameters() if p.requires_grad and ".lora_" in n]

    def prepare_save(self) -> None:
        """Applies a pending mask and makes ``rank_pattern`` describe the weights exactly.

        PEFT's saved adapter keeps only the ranks ``rank_pattern`` marks. The best checkpoint the loop restores
        may predate the last allocation, so every rank whose singular value is non-zero is kept as well: the
        saved adapter then computes exactly what the in-memory model computes.
        """
        self.apply_pending_mask()
        if self.config.rank_pattern is not None:
            self.config.rank_pattern = self._pattern_of_weights(self.config.rank_pattern)

    def _pattern_of_weights(self, old: dict) -> dict[str, list[bool]]:
        """Per adapted layer, the ranks ``old`` keeps or whose singular value is non-zero."""
        pattern = {}
        for n, p in self.backbone.named_parameters():
            if f".lora_E.{ADAPTER}" in n:  # (r, 1) singular values
                kept = old.get(n, old.get(n.replace(f".{ADAPTER}", ""), [False] * p.shape[0]))
                nonzero = (p.detach() != 0).view(-1).tolist()
                pattern[n] = [bool(a or b) for a, b in zip(kept, nonzero, strict=True)]
        return pattern


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

    def export_model(self, model: nn.Module, in_place: bool = False) -> nn.Module:
        """``model`` with the adapter merged into the backbone weights (``merge=False``: removed, leaving the
        pretrained trunk), as a plain model.

        Args:
            model: The adapted model given to ``apply``.
            in_place: Unload the adapter from ``model`` itself (no copy: the end of a run, where a copy would
                double the peak memory). Otherwise ``model`` is left as it is and a copy is returned.
        """
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
        final, tmp = Path(run_dir) / "adapter", Path(run_dir) / "adapter.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        self.peft_model.save_pretrained(str(tmp))
        head = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
        save_file(head, str(tmp / "head.safetensors"), metadata={"format": "pt"})
        (tmp / ADAPTER_INFO).write_text(json.dumps({"merged": self.merge}) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)


# ---------------------------------------------------------------------------------------------- apply


def _adapt(
    model: nn.Module,
    config: PeftConfig,
    training: TrainingConfig,
    lr_multiplier: float,
    decay: bool = True,
    fused: bool = False,
):
    """Injects the adapter into ``model.backbone`` (``fused``: with the lean layers of :mod:`lora_layers`);
    returns the PEFT wrapper and the optimizer groups."""
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
        export_model=adapted.export_model,
        export_merges=merge,
        pretrained_view=peft_model.disable_adapter,
        save_extra=adapted.save_extra,
    )


def _note(name: str, targets: Targets, lr: float) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in targets.names})
    return (
        f"{name} on {len(targets.names)} layers ({targets.how}: {', '.join(leaves)}), adapters at lr {lr:g}"
    )


def apply_lora(model: nn.Module, settings: LoraSettings, training: TrainingConfig) -> StrategyPlan:
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


def adalora_total_steps(settings: AdaLoraSettings, training: TrainingConfig) -> tuple[int, str]:
    """The schedule length and where it came from: the setting, else training.max_steps, else a placeholder."""
    if settings.total_steps is not None:
        return settings.total_steps, "strategy.total_steps"
    if training.max_steps is not None:
        return training.max_steps, "training.max_steps"
    # provisional: the loop reports the real number of steps through plan.on_train_begin before step 0
    return FALLBACK_TOTAL_STEPS, "the run's length, set when training starts"


def apply_adalora(model: nn.Module, settings: AdaLoraSettings, training: TrainingConfig) -> StrategyPlan:
    from peft import AdaLoraConfig

    targets = resolve_targets(model.backbone, settings, "adalora")
    total, source = adalora_total_steps(settings, training)
    tinit, tfinal = schedule_steps(settings, total)  # checked before the model is touched
    config = AdaLoraConfig(
        init_r=settings.init_r,
        target_r=settings.target_r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets.names,
        fan_in_fan_out=fan_in_fan_out(model.backbone, targets.names),
        tinit=tinit,
        tfinal=tfinal,
        deltaT=settings.deltaT,
        total_step=total,
        orth_reg_weight=settings.orth_reg_weight,
    )
    peft_model, groups = _adapt(model, config, training, settings.lr_multiplier, fused=settings.fused)
    schedule = AdaLoraSchedule(peft_model, settings, total)
    lr = training.learning_rate * settings.lr_multiplier
    notes = [
        _note(f"AdaLoRA rank {settings.init_r} -> {settings.target_r} on average", targets, lr),
        f"AdaLoRA schedule over {total} steps ({source}): warm-up {config.tinit}, final {config.tfinal}",
    ]
    follow = settings.total_steps is None and training.max_steps is None
    return _plan(model, peft_model, groups, notes, schedule, follow_run_length=follow, merge=settings.merge)


def apply_ia3(model: nn.Module, settings: IA3Settings, training: TrainingConfig) -> StrategyPlan:
    from peft import IA3Config

    targets = resolve_targets(model.backbone, settings, "ia3")
    config = IA3Config(
        target_modules=targets.names,
        feedforward_modules=targets.feedforward,
        fan_in_fan_out=fan_in_fan_out(model.backbone, targets.names),
    )
    # Scaling vectors start at 1; weight decay would pull them towards 0, so they take none.
    peft_model, groups = _adapt(model, config, training, settings.lr_multiplier, decay=False)
    lr = training.learning_rate * settings.lr_multiplier
    note = _note(f"IA3 ({len(targets.feedforward)} feed-forward)", targets, lr)
    return _plan(model, peft_model, groups, [note], merge=settings.merge)


register_strategy("lora", LoraSettings, apply_lora, "low-rank adapters in the frozen trunk, merged on export")
register_strategy(
    "adalora", AdaLoraSettings, apply_adalora, "LoRA whose rank budget moves to the layers that need it"
)
register_strategy("ia3", IA3Settings, apply_ia3, "(IA)3: learned scales on keys, values, feed-forward inputs")
