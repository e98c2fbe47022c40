"""Building the task model from a backbone spec, and registering it with transformers' auto classes."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from transferkit.backbones import BackboneSpec, backbone_dict
from transferkit.config import RunConfig
from transferkit.remote_code.modeling_transferkit import (
    TransferkitConfig,
    TransferkitForSequenceClassification,
)

PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}

# In-process registration: transferkit loads its own saved models without trust_remote_code.
try:
    AutoConfig.register("transferkit", TransferkitConfig)
    AutoModelForSequenceClassification.register(TransferkitConfig, TransferkitForSequenceClassification)
except ValueError:  # already registered (module reloaded)
    pass


def build_model(
    spec: BackboneSpec, cfg: RunConfig, labels: list[str]
) -> TransferkitForSequenceClassification:
    """Backbone (pretrained weights if the spec has them) + pooling + a freshly initialised head.

    Args:
        spec: The resolved backbone.
        cfg: The run configuration (head, task, seed).
        labels: Class names in head order; ``[]`` for regression (one output).
    """
    problem = cfg.task.problem
    num_labels = 1 if problem == "regression" else len(labels)
    names = labels if labels else ["value"]
    config = TransferkitConfig(
        backbone=backbone_dict(spec),
        pooling=spec.pooling,
        head_kind=cfg.head.kind,
        head_hidden_size=cfg.head.hidden_size,
        head_dropout=cfg.head.dropout,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        problem_type=PROBLEM_TYPES[problem],
    )
    torch.manual_seed(cfg.training.seed)
    model = TransferkitForSequenceClassification(config)
    if spec.weights is not None:
        pretrained = AutoModel.from_pretrained(spec.weights, config=spec.config)
        model.backbone.load_state_dict(pretrained.state_dict(), strict=False)
    return model
