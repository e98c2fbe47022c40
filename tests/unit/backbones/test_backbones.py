"""Backbone resolution (registered names, folders, hub ids offline) and the layer-group contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.backbones import BACKBONES, layer_groups, num_features, resolve_backbone
from transferkit.config import BackboneConfig, load_config
from transferkit.errors import RegistryError
from transferkit.tasks.text_classification.model import build_model


def test_minilm_resolves_offline_with_its_mean_pooling() -> None:
    spec = resolve_backbone(BackboneConfig(name="minilm-l6"))
    assert spec.name == "minilm-l6"
    # from the sentence-transformers 1_Pooling/config.json, not the [CLS] default
    assert spec.pooling == "mean"
    assert (Path(spec.weights) / "1_Pooling" / "config.json").is_file()
    assert (Path(spec.weights) / "config.json").is_file()
    assert spec.tokenizer == spec.weights
    assert (spec.config.num_hidden_layers, spec.config.hidden_size) == (6, 384)


def test_pooling_override_and_dropout() -> None:
    spec = resolve_backbone(BackboneConfig(name="minilm-l6", pooling="cls", dropout=0.0))
    assert spec.pooling == "cls"
    assert spec.config.hidden_dropout_prob == 0.0
    assert spec.config.attention_probs_dropout_prob == 0.0


def test_tiny_bert_is_random_and_small() -> None:
    spec = resolve_backbone(BackboneConfig(name="tiny-bert"))
    assert spec.weights is None
    assert spec.pooling == "mean"
    assert (spec.config.num_hidden_layers, spec.config.hidden_size) == (2, 32)
    assert Path(spec.tokenizer).is_dir()
    assert resolve_backbone(BackboneConfig(name="tiny-bert", pooling="cls")).pooling == "cls"


def test_folder_without_config_json(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no config.json"):
        resolve_backbone(BackboneConfig(name=str(tmp_path)))


def test_file_is_not_a_backbone(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0")
    with pytest.raises(RegistryError, match="is a file"):
        resolve_backbone(BackboneConfig(name=str(path)))


def test_unknown_name_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RegistryError) as info:
        resolve_backbone(BackboneConfig(name="no-such-org/no-such-model"))
    msg = str(info.value)
    assert "offline" in msg
    assert "no-such-org/no-such-model" in msg
    for name in BACKBONES.names():
        assert name in msg


def test_local_folder_resolves(tmp_path: Path) -> None:
    # A plain Hugging Face folder (config only): resolves with [CLS] pooling, as it has no sentence-transformers config.
    spec = resolve_backbone(BackboneConfig(name="tiny-bert"))
    spec.config.save_pretrained(tmp_path)
    local = resolve_backbone(BackboneConfig(name=str(tmp_path)))
    assert local.weights == str(tmp_path)
    assert local.pooling == "cls"
    assert local.config.hidden_size == 32


@pytest.fixture(scope="module")
def tiny_backbone():
    cfg = load_config(None, ["data.train=x.csv", "backbone.name=tiny-bert"])
    return build_model(resolve_backbone(cfg.backbone), cfg, ["a", "b"]).backbone


def test_num_features(tiny_backbone) -> None:
    assert num_features(tiny_backbone) == 32


def test_layer_groups_order_and_coverage(tiny_backbone) -> None:
    groups = layer_groups(tiny_backbone)
    names = [name for name, _ in groups]
    assert names == ["embeddings", "block.0", "block.1"]
    embed = tiny_backbone.get_input_embeddings()
    assert any(embed is m for module in groups[0][1] for m in module.modules())

    owner: dict[int, str] = {}
    for name, modules in groups:
        assert modules, f"group {name} is empty"
        for module in modules:
            for p in module.parameters():
                assert id(p) not in owner, f"parameter in {owner.get(id(p))} and {name}"
                owner[id(p)] = name
    all_params = list(tiny_backbone.parameters())
    assert set(owner) == {id(p) for p in all_params}
    counted = sum(p.numel() for _, modules in groups for m in modules for p in m.parameters())
    assert counted == sum(p.numel() for p in all_params)


def test_blocks_are_the_encoder_layers_in_order(tiny_backbone) -> None:
    groups = dict(layer_groups(tiny_backbone))
    layers = tiny_backbone.encoder.layer
    assert groups["block.0"][0] is layers[0]
    assert groups["block.1"][0] is layers[1]
