"""Hugging Face vision backbones (ViT, ResNet, ConvNeXt, ... by id or folder) and tiny random ones for tests.

An image backbone keeps the contract of :mod:`transferkit.backbones.contract` through its own methods:

* ``features(pixel_values) -> (B, D)``: the pooled features a classification head reads, the same ones the
  model's own ``*ForImageClassification`` class reads (ViT: the [CLS] token after the final norm; ResNet:
  average pooling; ConvNeXt: the normed average);
* ``num_features``: D;
* ``layer_groups()``: stem / embeddings, one group per stage or block, and the final norm on top;
* ``hidden_after(batch, g)`` and ``run_from(hidden, None, g) -> (B, D)``: the output of group ``g`` and the
  rest of the network from there (partial caching for ``top-k``);
* ``adapter_targets(method)``: layers PEFT adapts when ``target_modules: auto`` (None: the default rule).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, ConvNextConfig, PretrainedConfig, ResNetConfig, ViTConfig

from transferkit.backbones.base import BackboneSpec, apply_dropout, register_backbone
from transferkit.config import BackboneConfig

VISION_TYPES = ("vit", "deit", "resnet", "convnext", "convnextv2", "dinov2", "swin", "regnet", "beit")


def is_vision_config(config: PretrainedConfig) -> bool:
    """True for a transformers config of an image model (it has pixel channels and no vocabulary)."""
    return getattr(config, "model_type", "") in VISION_TYPES or (
        hasattr(config, "num_channels") and not hasattr(config, "vocab_size")
    )


def _block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The stack of stages / blocks: the shallowest ModuleList with two or more entries.

    (ConvNeXt's stages hold ModuleLists of their own, longer than the list of stages.)
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) >= 2]
    if not found:
        raise ValueError(f"{type(model).__name__} has no stack of stages or blocks (nn.ModuleList)")
    return min(found, key=lambda nm: nm[0].count("."))


class HFVisionBackbone(nn.Module):
    """A transformers vision model (``AutoModel``) behind the image backbone contract.

    Args:
        config: The model's transformers config.
        image_size: Input size when it differs from ``config.image_size`` (ViT then interpolates its
            position embeddings).
    """

    def __init__(self, config: PretrainedConfig, image_size: int | None = None):
        super().__init__()
        try:  # ViT-style models carry a pooler that *ForImageClassification never uses
            self.model = AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:
            self.model = AutoModel.from_config(config)
        self.model_type = config.model_type
        native = getattr(config, "image_size", None)
        self.interpolate = bool(image_size and isinstance(native, int) and image_size != native)
        sizes = getattr(config, "hidden_sizes", None)
        self.num_features = int(sizes[-1]) if sizes else int(config.hidden_size)

    def _kwargs(self) -> dict:
        return {"interpolate_pos_encoding": True} if self.interpolate else {}

    def _pool(self, last: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
        if last.ndim == 3:  # (B, T, D) tokens, final norm applied: the [CLS] token
            return last[:, 0]
        return pooled.flatten(1)  # (B, D, 1, 1) or (B, D) -> (B, D)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D) pooled features."""
        out = self.model(pixel_values=pixel_values, **self._kwargs())
        return self._pool(out.last_hidden_state, out.pooler_output)

    features = forward

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        name, blocks = _block_list(self.model)
        children = [m for m in self.model.children() if next(m.parameters(), None) is not None]
        in_blocks = {id(p) for p in blocks.parameters()}
        bottom, top, seen = [], [], False
        for child in children:
            if any(id(p) in in_blocks for p in child.parameters()):
                seen = True
                top += [
                    s
                    for s in child.children()
                    if s is not blocks
                    and not any(id(p) in in_blocks for p in s.parameters())
                    and next(s.parameters(), None) is not None
                ]
                continue
            (top if seen else bottom).append(child)
        groups = [("stem", bottom)] + [(f"{name}.{i}", [b]) for i, b in enumerate(blocks)]
        groups[-1] = (groups[-1][0], groups[-1][1] + top)
        return groups

    def hidden_after(self, batch: dict, group: int) -> torch.Tensor:
        """Output of layer group ``group`` (0 = stem): (B, T, D) tokens or (B, C, h, w) maps."""
        out = self.model(pixel_values=batch["pixel_values"], output_hidden_states=True, **self._kwargs())
        return out.hidden_states[group]

    def run_from(self, hidden: torch.Tensor, attention_mask, group: int) -> torch.Tensor:
        """Runs the stages / blocks from group ``group`` on cached outputs; returns (B, D) pooled features."""
        _, blocks = _block_list(self.model)
        for block in list(blocks)[group - 1 :]:
            out = block(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        return self._finish(hidden)

    def _finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's own top: ViT final norm + [CLS]; ResNet pooler; ConvNeXt norm of the average."""
        m = self.model
        if self.model_type == "convnext":
            return m.layernorm(hidden.mean([-2, -1]))
        if hidden.ndim == 3:
            return m.layernorm(hidden)[:, 0]
        if getattr(m, "pooler", None) is not None:
            return m.pooler(hidden).flatten(1)
        raise NotImplementedError(f"partial caching is not supported for {self.model_type}")

    @property
    def supports_hidden_cache(self) -> bool:
        return self.model_type in ("vit", "deit", "resnet", "convnext")

    def adapter_targets(self, method: str) -> list[str] | None:
        """Convolutional stages without linear layers (ResNet): their full (ungrouped) convolutions."""
        groups = [mods for _, mods in self.layer_groups()[1:]]
        groups[-1] = groups[-1][:1]
        names = {id(m): n for n, m in self.named_modules()}
        blocks = [m for mods in groups for top in mods for m in top.modules()]
        if any(isinstance(m, nn.Linear) for m in blocks):
            return None  # the default rule (every linear layer of the blocks) fits
        return [names[id(m)] for m in blocks if isinstance(m, nn.Conv2d) and m.groups == 1]


def _tiny(name: str, config: PretrainedConfig, cfg: BackboneConfig) -> BackboneSpec:
    return BackboneSpec(name, apply_dropout(config, cfg.dropout), None, "", "image")


def tiny_vit(cfg: BackboneConfig) -> BackboneSpec:
    """A random 2-block, 32-wide ViT on 32x32 images (patches of 8): for tests, no download."""
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)  # fmt: skip
    return _tiny("tiny-vit", config, cfg)


def tiny_resnet(cfg: BackboneConfig) -> BackboneSpec:
    """A random 2-stage ResNet (8 and 16 channels): for tests, no download."""
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return _tiny("tiny-resnet", config, cfg)


def tiny_convnext(cfg: BackboneConfig) -> BackboneSpec:
    """A random 2-stage ConvNeXt (8 and 16 channels): for tests, no download."""
    return _tiny(
        "tiny-convnext", ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32), cfg
    )


register_backbone("tiny-vit", tiny_vit, "random 2-block 32-wide ViT for 32x32 images, for tests (no weights)")
register_backbone("tiny-resnet", tiny_resnet, "random 2-stage ResNet (8/16 channels), for tests (no weights)")
register_backbone(
    "tiny-convnext", tiny_convnext, "random 2-stage ConvNeXt (8/16 channels), for tests (no weights)"
)
