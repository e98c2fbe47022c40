"""Which layers PEFT adapts: chosen per backbone family from ``config.model_type``, inside the blocks only.

``target_modules: auto`` looks the family up in :data:`FAMILIES`; an unknown family gets every linear layer of
the transformer blocks (every layer group above the embeddings), so new text, image or causal-LM backbones
need no entry here; a backbone may also name its own targets (``adapter_targets``, e.g. convolutional nets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from transferkit.backbones.contract import layer_groups
from transferkit.errors import ConfigError

if TYPE_CHECKING:
    from transferkit.strategies.peft.common import _AdapterSettings


@dataclass(frozen=True)
class Family:
    """Layer names of one backbone family.

    Attributes:
        lora: Last name component of the layers LoRA / AdaLoRA adapt.
        ia3: Last name component of the attention layers IA3 rescales (keys, values).
        ia3_feedforward: Name inside a block of the feed-forward output layer (IA3 scales its input).
    """

    lora: tuple[str, ...]
    ia3: tuple[str, ...]
    ia3_feedforward: tuple[str, ...]


_BERT = Family(("query", "key", "value", "dense"), ("key", "value"), ("output.dense",))
_DEBERTA = Family(
    ("query_proj", "key_proj", "value_proj", "dense"), ("key_proj", "value_proj"), ("output.dense",)
)
_DISTILBERT = Family(
    ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"), ("k_lin", "v_lin"), ("ffn.lin2",)
)
_LLAMA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LLAMA = Family(_LLAMA_NAMES, ("k_proj", "v_proj"), ("mlp.down_proj",))
_VIT = Family(("q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"), ("k_proj", "v_proj"), ("mlp.fc2",))
_GPT2 = Family(("c_attn", "c_proj", "c_fc"), ("c_attn",), ("mlp.c_proj",))
FAMILIES: dict[str, Family] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra"), _BERT),
    "deberta-v2": _DEBERTA,
    "distilbert": _DISTILBERT,
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"), _LLAMA),
    "vit": _VIT,
    "gpt2": _GPT2,
}


@dataclass
class Targets:
    """Resolved module names (relative to the backbone) and how they were chosen."""

    names: list[str]
    feedforward: list[str] = field(default_factory=list)
    how: str = ""


def _linear_types() -> tuple[type[nn.Module], ...]:
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layer

    return nn.Linear, Conv1D


def _block_linears(backbone: nn.Module) -> list[tuple[str, str]]:
    """``(name in the backbone, name inside its layer group)`` of every linear layer above the embeddings."""
    linear = _linear_types()
    names = {id(m): n for n, m in backbone.named_modules()}
    groups = [modules for _, modules in layer_groups(backbone)[1:]]
    groups[-1] = groups[-1][:1]  # the contract adds final norms and poolers to the top group: not blocks
    found = []
    for modules in groups:
        for top in modules:
            for rel, m in top.named_modules():
                if isinstance(m, linear):
                    found.append((f"{names[id(top)]}.{rel}".strip("."), rel))
    return found


def auto_targets(backbone: nn.Module, method: str) -> Targets:
    """The layers ``target_modules: auto`` adapts for ``method`` ("lora", "adalora" or "ia3").

    A backbone may name its own through ``adapter_targets(method) -> list[str] | None`` (contract hook; e.g.
    the convolutions of a convolutional network, which has no linear layer in its blocks).
    """
    own = backbone.adapter_targets(method) if hasattr(backbone, "adapter_targets") else None
    if own:
        return Targets(list(own), [], "auto (the backbone's own adapter targets)")
    linears = _block_linears(backbone)
    if not linears:
        raise ConfigError(
            f"strategy.target_modules: no linear layer in {type(backbone).__name__}'s blocks; list some"
        )
    model_type = getattr(getattr(backbone, "config", None), "model_type", None)
    family = FAMILIES.get(model_type)
    if family is not None:
        leaf = {n: rel.rsplit(".", 1)[-1] for n, rel in linears}
        if method == "ia3":
            ff = [n for n, rel in linears if rel in family.ia3_feedforward]
            names = [n for n, _ in linears if leaf[n] in family.ia3 or n in ff]
        else:
            ff, names = [], [n for n, _ in linears if leaf[n] in family.lora]
        if names:  # else the family renamed its layers (another transformers version): fall back below
            return Targets(names, ff, f"auto ({model_type})")
    return Targets([n for n, _ in linears], [], "auto (every linear layer of the blocks)")


def _match(backbone: nn.Module, suffixes: list[str], setting: str) -> list[str]:
    """Backbone modules named ``suffix`` or ending in ``.suffix`` (PEFT's rule); every suffix must match."""
    names = [n for n, _ in backbone.named_modules() if n]

    def hit(name: str, s: str) -> bool:
        return name == s or name.endswith("." + s)

    missing = [s for s in suffixes if not any(hit(n, s) for n in names)]
    if missing:
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, _linear_types())}
        )
        raise ConfigError(
            f"strategy.{setting}: {missing} match no backbone module (its linear layers: {linear})"
        )
    return [n for n in names if any(hit(n, s) for s in suffixes)]


def resolve_targets(backbone: nn.Module, settings: _AdapterSettings, method: str) -> Targets:
    """The settings' ``target_modules`` (and IA3's ``feedforward_modules``) as full module names."""
    if settings.target_modules == "auto":
        targets = auto_targets(backbone, method)
    else:
        targets = Targets(_match(backbone, settings.target_modules, "target_modules"), how="listed")
    if method != "ia3":
        return targets
    if settings.feedforward_modules != "auto":
        targets.feedforward = _match(backbone, settings.feedforward_modules, "feedforward_modules")
        if not set(targets.feedforward) <= set(targets.names):
            raise ConfigError("strategy.feedforward_modules must be among strategy.target_modules")
    elif targets.how == "listed":  # the family's feed-forward layers among those listed
        auto_ff = set(auto_targets(backbone, method).feedforward)
        targets.feedforward = [n for n in targets.names if n in auto_ff]
    return targets


def fan_in_fan_out(backbone: nn.Module, names: list[str]) -> bool:
    """GPT-2's Conv1D stores weights (in, out); PEFT needs to know."""
    conv1d = _linear_types()[1]
    modules = dict(backbone.named_modules())
    return all(isinstance(modules[n], conv1d) for n in names)
