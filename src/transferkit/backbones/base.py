"""The backbone registry and the spec every builder returns."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from transferkit.config import BackboneConfig
from transferkit.errors import RegistryError
from transferkit.registry import Registry


@dataclass
class BackboneSpec:
    """Everything needed to build (and later rebuild) a backbone.

    Attributes:
        name: Registered name, hub id or folder as the user gave it.
        config: The backbone's transformers config.
        weights: Folder or hub id to load pretrained weights from; None for random init (tests).
        tokenizer: Folder or hub id of the tokenizer.
        pooling: Resolved pooling ("mean" or "cls").
    """

    name: str
    config: PretrainedConfig
    weights: str | None
    tokenizer: str
    pooling: str


# Keys of a backbone's config that belong to the task model around it (set again by its own config).
_TASK_KEYS = (
    "_name_or_path",
    "architectures",
    "id2label",
    "label2id",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "problem_type",
)


def backbone_dict(spec: BackboneSpec) -> dict:
    """The backbone config as a plain dict, without task-specific keys (the ``backbone`` field of every
    task model's config: text, token and image classification)."""
    d = spec.config.to_dict()
    for key in _TASK_KEYS:
        d.pop(key, None)
    return d


BackboneBuilder = Callable[[BackboneConfig], BackboneSpec]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")


def register_backbone(name: str, builder: BackboneBuilder, description: str) -> BackboneBuilder:
    """Registers ``builder(cfg) -> BackboneSpec`` under ``name``."""
    return BACKBONES.register(name, builder, description)


def native_pooling(folder: str | os.PathLike) -> str:
    """Reads a sentence-transformers pooling config if the folder has one; [CLS] otherwise."""
    pooling_cfg = Path(folder) / "1_Pooling" / "config.json"
    if pooling_cfg.is_file():
        modes = json.loads(pooling_cfg.read_text())
        if modes.get("pooling_mode_mean_tokens"):
            return "mean"
    return "cls"


def apply_dropout(config: PretrainedConfig, dropout: float | None) -> PretrainedConfig:
    """Overrides the usual dropout fields of a transformers config where they exist."""
    if dropout is None:
        return config
    for key in (
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "dropout",
        "attention_dropout",
        "hidden_dropout",
    ):
        if hasattr(config, key):
            setattr(config, key, dropout)
    return config


def from_pretrained_source(
    name: str, source: str, cfg: BackboneConfig, pooling_hint: str | None = None
) -> BackboneSpec:
    """Spec for a Hugging Face folder or hub id."""
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "the hub is offline (HF_HUB_OFFLINE=1)" if offline else str(err).splitlines()[0]
        known = ", ".join(BACKBONES.names())
        raise RegistryError(
            f"unknown backbone {name!r}: not registered ({known}), not a local folder, and not loadable from the hub: {why}"
        ) from None
    native = pooling_hint or (native_pooling(source) if Path(source).is_dir() else "cls")
    pooling = native if cfg.pooling == "auto" else cfg.pooling
    return BackboneSpec(name, apply_dropout(config, cfg.dropout), source, source, pooling)


def resolve_backbone(cfg: BackboneConfig) -> BackboneSpec:
    """Resolves a registered name, a local folder or a hub id into a :class:`BackboneSpec`.

    Raises:
        RegistryError: if the name is none of the three.
    """
    spec = _resolve(cfg)
    return spec if cfg.pretrained else replace(spec, weights=None)  # same architecture, random weights


def _resolve(cfg: BackboneConfig) -> BackboneSpec:
    if cfg.name in BACKBONES:
        return BACKBONES.get(cfg.name)(cfg)
    if Path(cfg.name).exists() and not Path(cfg.name).is_dir():
        raise RegistryError(
            f"backbone {cfg.name!r} is a file; give a model folder (with config.json) or a registered name"
        )
    if Path(cfg.name).is_dir() and not (Path(cfg.name) / "config.json").is_file():
        raise RegistryError(
            f"backbone folder {cfg.name!r} has no config.json; is it a Hugging Face model folder?"
        )
    return from_pretrained_source(cfg.name, cfg.name, cfg)
