"""``adalora``: LoRA whose rank budget moves, on a schedule, to the layers that need it.

AdaLoRA prunes ranks on a schedule that must know the run's length: ``strategy.total_steps``, else
``training.max_steps``, else the number of steps the loop reports through ``plan.on_train_begin`` before the
first step (see :class:`AdaLoraSchedule`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field, model_validator
from torch import nn

from transferkit.config import TrainingConfig
from transferkit.errors import ConfigError
from transferkit.strategies.base import StrategyPlan, register_strategy
from transferkit.strategies.peft.common import ADAPTER, _adapt, _AdapterSettings, _fused_field, _note, _plan
from transferkit.strategies.peft.targets import fan_in_fan_out, resolve_targets

if TYPE_CHECKING:  # peft loads on first use
    from peft import PeftModel

# AdaLoRA's schedule length when neither strategy.total_steps nor training.max_steps is set
FALLBACK_TOTAL_STEPS = 1000


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


def adalora_total_steps(settings: AdaLoraSettings, training: TrainingConfig) -> tuple[int, str]:
    """The schedule length and where it came from: the setting, else training.max_steps, else a placeholder."""
    if settings.total_steps is not None:
        return settings.total_steps, "strategy.total_steps"
    if training.max_steps is not None:
        return training.max_steps, "training.max_steps"
    # provisional: the loop reports the real number of steps through plan.on_train_begin before step 0
    return FALLBACK_TOTAL_STEPS, "the run's length, set when training starts"


def apply_adalora(model: nn.Module, settings: AdaLoraSettings, training: TrainingConfig) -> StrategyPlan:
    # peft, scipy, psutil load on first use, not when adalora is imported
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


register_strategy(
    "adalora", AdaLoraSettings, apply_adalora, "LoRA whose rank budget moves to the layers that need it"
)
