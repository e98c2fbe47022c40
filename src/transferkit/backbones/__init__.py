"""Backbones: registered builders plus any Hugging Face model id or local folder.

A backbone resolves to a :class:`BackboneSpec` (its config, where its weights and tokenizer live, and its
native pooling). Strategies never touch a model's attribute names: they use the contract in
:mod:`transferkit.backbones.contract` (features, feature width, ordered layer groups).
"""

from transferkit.backbones.base import (
    BACKBONES,
    BackboneSpec,
    backbone_dict,
    register_backbone,
    resolve_backbone,
)
from transferkit.backbones.contract import layer_groups, num_features

# Registered builders (each module ends with its registration call).
from transferkit.backbones import hf_text as _hf_text  # noqa: F401, E402  isort: skip
from transferkit.backbones import vision as _vision  # noqa: F401, E402  isort: skip
from transferkit.backbones import efficientnet as _efficientnet  # noqa: F401, E402  isort: skip
from transferkit.backbones import causal_lm as _causal_lm  # noqa: F401, E402  isort: skip

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "backbone_dict",
    "layer_groups",
    "num_features",
    "register_backbone",
    "resolve_backbone",
]
