"""The image classification model: an image backbone, its pooled features and a linear or MLP head.

``TransferkitForImageClassification`` is a transformers ``PreTrainedModel``, so a run saves it with
``save_pretrained`` (``RUN/model``) and transferkit loads it back with ``from_pretrained`` (the class is
registered with ``AutoModelForImageClassification`` in this process). For Hugging Face backbones with a
linear head the run also holds ``RUN/transformers``: the stock ``*ForImageClassification`` model of that
family with the same weights (checked to give the same logits), loadable by plain ``transformers``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import ImageClassifierOutput

from transferkit import hardware
from transferkit.backbones import BackboneSpec, backbone_dict
from transferkit.backbones.contract import hidden_after
from transferkit.backbones.efficientnet import (
    FAMILY,
    EfficientNetLiteBackbone,
    EfficientNetLiteConfig,
    load_weights,
)
from transferkit.backbones.vision import HFVisionBackbone, is_vision_config
from transferkit.config import RunConfig
from transferkit.errors import ConfigError
from transferkit.inference import ordered_loader
from transferkit.remote_code.modeling_transferkit import Head
from transferkit.utils.io import DiscardFolder, publish_folder

log = logging.getLogger("transferkit")


class TransferkitImageConfig(PretrainedConfig):
    """The backbone's config (a dict with its ``model_type``), the input size and the head settings."""

    model_type = "transferkit-image"
    backbone: dict | None = None
    image_size: int | None = None
    head_kind: str = "linear"
    head_hidden_size: int = 256
    head_dropout: float = 0.1


def build_image_backbone(backbone: dict, image_size: int | None = None) -> nn.Module:
    """A randomly initialised image backbone from its config dict (loading fills the weights)."""
    backbone = dict(backbone)
    model_type = backbone.pop("model_type")
    if model_type == FAMILY:
        return EfficientNetLiteBackbone(EfficientNetLiteConfig(**backbone), image_size)
    return HFVisionBackbone(AutoConfig.for_model(model_type, **backbone), image_size)


class TransferkitForImageClassification(PreTrainedModel):
    """(B, 3, H, W) pixels -> backbone -> (B, D) pooled features -> head -> (B, C) logits."""

    config_class = TransferkitImageConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"

    def __init__(self, config: TransferkitImageConfig):
        super().__init__(config)
        self.backbone = build_image_backbone(config.backbone, config.image_size)
        self.head = Head(self.backbone.num_features, config.num_labels, config.head_kind, config.head_hidden_size, config.head_dropout)  # fmt: skip
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear) and any(module is m for m in self.head.modules()):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D) pooled features."""
        return self.backbone(pixel_values)

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs):
        logits = self.head(self.features(pixel_values))  # (B, C)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


try:  # in-process registration: transferkit loads its own saved models without trust_remote_code
    AutoConfig.register("transferkit-image", TransferkitImageConfig)
    AutoModelForImageClassification.register(TransferkitImageConfig, TransferkitForImageClassification)
except ValueError:  # already registered (module reloaded)
    pass


def is_image_backbone(spec: BackboneSpec) -> bool:
    return spec.config.model_type == FAMILY or is_vision_config(spec.config)


def build_image_model(
    spec: BackboneSpec, cfg: RunConfig, labels: list[str]
) -> TransferkitForImageClassification:
    """Backbone (with its pretrained weights when the spec has them) + a freshly initialised head.

    Raises:
        ConfigError: when the backbone is not an image model.
    """
    if not is_image_backbone(spec):
        raise ConfigError(
            f"backbone {spec.name!r} is not an image model; use efficientnet-lite0, a ViT / ResNet / ConvNeXt id or folder, or a tiny-* test backbone"
        )
    config = TransferkitImageConfig(
        backbone=backbone_dict(spec),
        image_size=cfg.image.image_size,
        head_kind=cfg.head.kind,
        head_hidden_size=cfg.head.hidden_size,
        head_dropout=cfg.head.dropout,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    torch.manual_seed(cfg.training.seed)
    model = TransferkitForImageClassification(config)
    if spec.weights is not None:
        if spec.config.model_type == FAMILY:
            load_weights(model.backbone, spec.weights)
        else:
            try:  # without the pooler *ForImageClassification never uses (no "missing weights" report)
                pretrained = AutoModel.from_pretrained(
                    spec.weights, config=spec.config, add_pooling_layer=False
                )
            except TypeError:
                pretrained = AutoModel.from_pretrained(spec.weights, config=spec.config)
            missing, _ = model.backbone.model.load_state_dict(pretrained.state_dict(), strict=False)
            if missing:
                raise ConfigError(f"backbone {spec.name!r}: weights missing for {missing[:3]} after loading")
    return model


def save_stock_transformers(model: TransferkitForImageClassification, folder: Path, processor=None) -> bool:
    """Writes the stock transformers ``*ForImageClassification`` of the backbone's family with these weights.

    Only for Hugging Face backbones with a linear head at their native input size; the stock model's logits
    are checked against this model's on a random batch before anything is written.

    Returns:
        True if written, False when this model has no stock equivalent.
    """
    backbone = model.backbone
    if (
        not isinstance(backbone, HFVisionBackbone)
        or model.config.head_kind != "linear"
        or backbone.interpolate
    ):
        return False
    config = backbone.model.config.__class__.from_dict(backbone.model.config.to_dict())
    config.num_labels = model.config.num_labels
    config.id2label, config.label2id = dict(model.config.id2label), dict(model.config.label2id)
    try:
        stock = AutoModelForImageClassification.from_config(config)
    except ValueError:
        return False
    getattr(stock, stock.base_model_prefix).load_state_dict(backbone.model.state_dict())
    classifier = [m for m in stock.modules() if isinstance(m, nn.Linear)][-1]
    layer = model.head.output_layer
    with torch.no_grad():
        classifier.weight.copy_(layer.weight)
        classifier.bias.copy_(layer.bias)
    size = getattr(config, "image_size", None)
    size = size if isinstance(size, int) else 64
    x = torch.randn(2, getattr(config, "num_channels", 3), size, size)
    was_training = model.training
    model.eval()
    stock.eval()
    with torch.no_grad():
        same = torch.allclose(stock(pixel_values=x).logits, model(pixel_values=x).logits, atol=1e-4)
    model.train(was_training)
    if not same:
        log.info("no stock transformers copy: %s computes its features differently", type(stock).__name__)
        return False
    stock.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return True


def hidden_states(
    model, dataset, collator, batch_size: int, group: int, precision: str
) -> list[torch.Tensor]:
    """Per-image output of layer group ``group`` of the frozen bottom ((T, D) tokens or (C, h, w) maps)."""
    out: list[torch.Tensor | None] = [None] * len(dataset)
    model.eval()
    with torch.inference_mode():
        for batch in ordered_loader(dataset, collator, batch_size):
            idx = batch.pop("idx")
            with hardware.autocast(precision):
                hidden = hidden_after(model.backbone, batch, group).float()  # stored in fp32
            for row, i in enumerate(idx.tolist()):
                out[i] = hidden[row].clone()
    return out


def save_image_model(final, processor, run_dir: Path) -> None:
    """RUN/model, and for a Hugging Face backbone a stock ``transformers`` copy in RUN/transformers."""
    _save_pretrained(final, processor, run_dir / "model")
    # an unmerged adapter (--no-merge) leaves the pretrained trunk in RUN/model: no stock copy of that
    if not _unmerged_adapter(run_dir):
        with publish_folder(run_dir / "transformers") as tmp:  # replaces one a killed save left
            if not save_stock_transformers(final, tmp, processor):
                raise DiscardFolder  # no stock transformers class computes this model


def _unmerged_adapter(run_dir: Path) -> bool:
    info = run_dir / "adapter" / "transferkit.json"
    return info.is_file() and not json.loads(info.read_text()).get("merged", True)


def _save_pretrained(model, processor, final: Path) -> None:
    """``save_pretrained`` into ``model.partial/``, renamed to ``model/`` once complete."""
    with publish_folder(final) as tmp:
        model.save_pretrained(tmp)
        if processor is not None:
            processor.save_pretrained(tmp)
