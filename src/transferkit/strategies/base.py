"""The strategy registry and the plan a strategy hands to the training loop.

A strategy decides which weights train, at which learning rates, and whether the frozen part of the
model can be run once and cached. It sees the model only through the backbone contract
(:func:`transferkit.backbones.layer_groups`) and the model's ``head``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from transferkit.backbones.contract import layer_groups, supports_hidden_cache
from transferkit.config import StrategyConfig, TrainingConfig
from transferkit.errors import ConfigError, RegistryError
from transferkit.registry import Registry


def yaml_off(cls, value):
    """Before-validator: YAML reads a bare ``off`` as False; take it as the setting 'off'."""
    return "off" if value is False else value


class StrategySettings(BaseModel):
    """Base of every strategy's own settings (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Stage:
    """A phase of training with its own trainable set and a fresh optimizer and warmup.

    Attributes:
        name: Shown in logs ("head", "top-2", ...).
        start_epoch: When the stage begins, in epochs from the start of training.
        enter: Sets ``requires_grad`` for the stage and returns its optimizer parameter groups. Must be
            deterministic: a resumed run replays it.
    """

    name: str
    start_epoch: float
    enter: Callable[[], list[dict[str, Any]]]


@dataclass
class StrategyPlan:
    """What the loop runs.

    Attributes:
        param_groups: Optimizer groups (``params``, ``lr``, ``weight_decay``), trainable parameters only.
        cache: "features" when the whole trunk is frozen, so pooled features are computed once and only the
            head trains on them; "hidden" when the bottom ``cut`` layer groups are frozen, so their output is
            computed once and only the top groups run each step; None when the full model runs every step.
        cache_location: "auto", "memory" or "disk" for cached features.
        frozen_trunk: True when no backbone weight trains (the trunk then stays in eval mode: no dropout).
        frozen_modules: Modules kept in eval mode while the rest trains (frozen parts never use dropout).
        cut: Number of frozen bottom layer groups (with ``cache="hidden"``).
        stages: Phases with their own trainable sets (gradual unfreezing); empty means one stage.
        probe_init: Initialise the head from a linear probe fitted on frozen features first (LP-FT).
        closed_form: The head is the fitted linear probe itself; no gradient steps (linear-probe).
        notes: Human-readable facts for the run log and model card.
        after_backward: Called with the optimizer step number after each backward pass, before the
            gradients are cleared (e.g. AdaLoRA's rank re-allocation).
        on_train_begin: Called once with the number of optimizer steps the loop will run.
        state_dict / load_state_dict: The strategy's own training state (e.g. AdaLoRA's importance scores),
            saved in every checkpoint and restored on resume.
        unload_adapter: ``unload_adapter(model, in_place=False)``, the adapter merge: takes the adapter out of
            the trained model, merged into its weights (or dropped, leaving the pretrained trunk, with
            ``merge=False``), giving the task's plain model; a copy unless ``in_place``; None: nothing to unload.
        merges_adapter: ``unload_adapter`` folds everything that trained into the plain model (same predictions),
            so a run merges in place before its final evaluation and scores exactly what it saves.
        pretrained_view: A context manager in which the model computes its untouched pretrained function
            (e.g. adapters switched off), used for the frozen-feature pass before training.
        save_extra: Writes strategy-specific files into the run folder (e.g. the PEFT adapter).
    """

    param_groups: list[dict[str, Any]]
    cache: Literal["features", "hidden"] | None = None
    cache_location: str = "auto"
    frozen_trunk: bool = False
    frozen_modules: list[nn.Module] = field(default_factory=list)
    cut: int = 0
    stages: list[Stage] = field(default_factory=list)
    probe_init: bool = False
    closed_form: bool = False
    notes: list[str] = field(default_factory=list)
    after_backward: Callable[[int], None] | None = None
    on_train_begin: Callable[[int], None] | None = None
    state_dict: Callable[[], dict] | None = None
    load_state_dict: Callable[[dict], None] | None = None
    unload_adapter: Callable[..., nn.Module] | None = None
    merges_adapter: bool = False
    pretrained_view: Callable[[], Any] | None = None
    save_extra: Callable[[nn.Module, Path], None] | None = None

    def merge_adapter(self, model: nn.Module, run_dir: Path, save_model: bool, main: bool) -> bool:
        """The adapter merge, one step shared by every task, run before the final evaluation.

        When ``unload_adapter`` folds everything that trained into the weights (``merges_adapter``), the adapter
        is saved first (``RUN/adapter``) and then merged into ``model`` in place: the final evaluation scores
        exactly what is saved, without the adapter's extra activations and without a copy of the model.

        Returns:
            True when ``model`` is now the plain model to save (nothing left to export).
        """
        if self.unload_adapter is None or not self.merges_adapter or not save_model:
            return False
        if main and self.save_extra is not None:
            self.save_extra(model, run_dir)  # the adapter itself, before it is merged away
        self.unload_adapter(model, in_place=True)
        return True

    def plain_model(self, model: nn.Module, merged: bool) -> nn.Module:
        """The model to save: ``model`` itself once merged, else exported in place (never a copy)."""
        if merged or self.unload_adapter is None:
            return model
        return self.unload_adapter(model, in_place=True)


StrategyApply = Callable[[nn.Module, StrategySettings, TrainingConfig], StrategyPlan]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its settings model and its ``apply(model, settings, training)``."""

    name: str
    settings: type[StrategySettings]
    apply: StrategyApply


STRATEGIES: Registry[Strategy] = Registry("strategy")


def register_strategy(
    name: str,
    settings: type[StrategySettings],
    apply: StrategyApply,
    description: str,
    chooses: bool = False,
) -> Strategy:
    """Registers a strategy; its settings sit beside ``strategy.name`` in the config.

    ``chooses=True`` marks a strategy that is replaced by another before training (``auto``): it has no plan
    of its own, so the strategy matrix checks the strategies it picks instead.
    """
    if not (isinstance(settings, type) and issubclass(settings, StrategySettings)):
        raise TypeError(f"strategy {name!r}: settings must subclass StrategySettings")
    return STRATEGIES.register(name, Strategy(name, settings, apply), description, chooses=chooses)


def trainable_strategies() -> list[str]:
    """Registered strategies with a plan of their own (every one but those that choose another)."""
    return [e.name for e in STRATEGIES if not e.extra.get("chooses")]


def strategy_settings(cfg: StrategyConfig) -> StrategySettings:
    """The validated settings of the configured strategy."""
    strategy = STRATEGIES.get(cfg.name)
    extra = (
        cfg.model_extra
        if cfg.model_extra is not None
        else {k: v for k, v in vars(cfg).items() if k != "name"}
    )
    return strategy.settings.model_validate(extra)


def strategy_errors(cfg: StrategyConfig) -> list[str]:
    """Problems with ``strategy.*``: an unknown name, or settings the chosen strategy does not accept."""
    name = getattr(cfg, "name", "full")
    if not isinstance(name, str) or not name:
        return [f"strategy.name: must be a strategy name (see `transferkit strategies`), got {name!r}"]
    if name not in STRATEGIES:
        try:
            STRATEGIES.get(name)
        except RegistryError as err:
            return [f"strategy.name: {err}"]
    try:
        strategy_settings(cfg)
    except ValidationError as err:
        out = []
        for e in err.errors():
            path = "strategy." + ".".join(str(p) for p in e["loc"])
            msg = f"unknown setting for strategy {name!r}" if e["type"] == "extra_forbidden" else e["msg"]
            out.append(f"{path}: {msg}")
        return out
    return []


def validate_strategy_settings(cfg: StrategyConfig, source: str = "config") -> None:
    """Checks ``strategy.*`` against the chosen strategy's settings; raises ConfigError with field paths."""
    problems = strategy_errors(cfg)
    if problems:
        raise ConfigError(f"{source}: {len(problems)} error(s): " + "; ".join(problems))


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Parameters that take no weight decay: biases and normalisation weights."""
    ids = set()
    for module in model.modules():
        is_norm = (
            isinstance(module, nn.LayerNorm | nn.GroupNorm | nn.BatchNorm1d | nn.BatchNorm2d)
            or "norm" in type(module).__name__.lower()
        )
        for name, p in module.named_parameters(recurse=False):
            if is_norm or name == "bias" or p.ndim < 2:
                ids.add(id(p))
    return ids


def decay_groups(
    model: nn.Module, params: Iterable[nn.Parameter], lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Splits trainable ``params`` into a weight-decay group and a no-decay group at learning rate ``lr``."""
    no_decay = _no_decay_ids(model)
    params = [p for p in params if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) not in no_decay], "lr": lr, "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "lr": lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def head_lr(training: TrainingConfig, frozen_trunk: bool) -> float:
    """The head's learning rate: explicit, else 1e-3 over a frozen trunk, else 10x the trunk's."""
    if training.head_learning_rate is not None:
        return training.head_learning_rate
    return 1e-3 if frozen_trunk else training.learning_rate * 10


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def set_trainable(model: nn.Module, group_ids: Iterable[int]) -> None:
    """Freezes the backbone except the given layer groups; the head always trains."""

    groups = layer_groups(model.backbone)
    model.backbone.requires_grad_(False)
    for i in group_ids:
        for m in groups[i][1]:
            m.requires_grad_(True)
    model.head.requires_grad_(True)


def layerwise_groups(
    model: nn.Module,
    group_ids: Iterable[int],
    training: TrainingConfig,
    decay: float = 1.0,
    frozen_trunk: bool = False,
) -> list[dict[str, Any]]:
    """Optimizer groups for the given layer groups at ``lr * decay ** depth_from_top``, plus the head.

    The top layer group has depth 0; the head trains at :func:`head_lr`.
    """

    groups = layer_groups(model.backbone)
    top = len(groups) - 1
    out: list[dict[str, Any]] = []
    for i in sorted(set(group_ids)):
        params = [p for m in groups[i][1] for p in m.parameters()]
        out += decay_groups(model, params, training.learning_rate * decay ** (top - i), training.weight_decay)
    out += decay_groups(
        model, model.head.parameters(), head_lr(training, frozen_trunk), training.weight_decay
    )
    return out


def num_groups(model: nn.Module) -> int:
    """How many layer groups the backbone has (embeddings + blocks for transformers)."""

    return len(layer_groups(model.backbone))


def plan_for(
    model: nn.Module, strategy: StrategyConfig, training: TrainingConfig, processes: int
) -> StrategyPlan:
    """The configured strategy applied to ``model``, every task's first step after building its model.

    Hidden-state caching needs one process and a backbone whose top groups can run from cached hidden states
    (the backbone contract says which); otherwise the frozen bottom is re-run every step.
    """

    log = logging.getLogger("transferkit")
    plan = STRATEGIES.get(strategy.name).apply(model, strategy_settings(strategy), training)
    if plan.cache == "hidden" and (processes > 1 or not supports_hidden_cache(model.backbone)):
        log.info("the frozen bottom is re-run every step (hidden-state caching needs one process and a backbone that supports it)")  # fmt: skip
        plan.cache = None
    trainable, total = count_parameters(model)
    log.info("strategy %s: %s of %s parameters train", strategy.name, f"{trainable:,}", f"{total:,}")
    return plan
