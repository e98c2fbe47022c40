"""A pretrained encoder with a pooling step and a small classification or regression head.

This file is self-contained (it imports only torch and transformers) because it is copied next to every
saved model: plain ``transformers`` then loads the model with
``AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`` or
``pipeline("text-classification", model=path, trust_remote_code=True)`` and gets the same predictions as
transferkit, mean pooling included (the stock ``*ForSequenceClassification`` classes always use [CLS]).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput


class TransferkitConfig(PretrainedConfig):
    """Configuration: the backbone's own config (as a dict) plus pooling and head settings."""

    model_type = "transferkit"
    backbone: dict | None = None
    pooling: str = "mean"
    head_kind: str = "linear"
    head_hidden_size: int = 256
    head_dropout: float = 0.1


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Pools token features into one vector per input.

    Args:
        hidden: (B, T, D) token features.
        attention_mask: (B, T) 1 for real tokens, 0 for padding; None means no padding.
        mode: "mean" (average of real tokens) or "cls" (the first token).

    Returns:
        (B, D) pooled features.
    """
    if mode == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class Head(nn.Module):
    """Linear head, or a one-hidden-layer MLP head: (B, D) features -> (B, num_outputs)."""

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        kind: str = "linear",
        hidden_size: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        if kind == "linear":
            self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_outputs))
        elif kind == "mlp":
            self.layers = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(in_features, hidden_size),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_size, num_outputs),
            )
        else:
            raise ValueError(f"unknown head kind {kind!r}")

    @property
    def output_layer(self) -> nn.Linear:
        return self.layers[-1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def build_backbone(backbone: dict) -> PreTrainedModel:
    """Builds the backbone from its config dict (random weights; loading fills them)."""
    backbone = dict(backbone)
    config = AutoConfig.for_model(backbone.pop("model_type"), **backbone)
    try:  # BERT-style models carry a [CLS] pooler we never use; leave it out where possible
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


class _BackboneWithHead(PreTrainedModel):
    """A backbone and a head on its last hidden states; subclasses say how features reach the head."""

    config_class = TransferkitConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: TransferkitConfig):
        super().__init__(config)
        self.backbone = build_backbone(config.backbone)
        width = self.backbone.config.hidden_size
        self.head = Head(
            width, config.num_labels, config.head_kind, config.head_hidden_size, config.head_dropout
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear) and any(module is m for m in self.head.modules()):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def _last_hidden(self, input_ids, attention_mask, token_type_ids, **kwargs) -> torch.Tensor:
        """(B, T) token ids -> (B, T, D) last hidden states."""
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state


class TransferkitForSequenceClassification(_BackboneWithHead):
    """Backbone -> pooling -> head. Single-label, multi-label and regression, as ``config.problem_type`` says."""

    def features(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> torch.Tensor:
        """(B, T) token ids -> (B, D) pooled features."""
        hidden = self._last_hidden(input_ids, attention_mask, token_type_ids, **kwargs)
        return pool(hidden, attention_mask, self.config.pooling)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        kwargs.pop("return_dict", None)
        logits = self.head(self.features(input_ids, attention_mask, token_type_ids, **kwargs))  # (B, C)
        loss = None
        if labels is not None:
            if self.config.problem_type == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            elif self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class TransferkitForTokenClassification(_BackboneWithHead):
    """Backbone -> per-token head: (B, T) token ids -> (B, T, C) tag logits (NER).

    Saved runs with a linear head are exported as the backbone family's own ``*ForTokenClassification``;
    this class is what an MLP head is saved as (``AutoModelForTokenClassification`` with remote code).
    """

    def features(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> torch.Tensor:
        """(B, T) token ids -> (B, T, D) token features of the last layer."""
        return self._last_hidden(input_ids, attention_mask, token_type_ids, **kwargs)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        kwargs.pop("return_dict", None)
        logits = self.head(self.features(input_ids, attention_mask, token_type_ids, **kwargs))  # (B, T, C)
        loss = None
        if labels is not None:  # -100 marks sub-tokens and padding the loss ignores
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)
