"""The token model's export: a linear head becomes the family's *ForTokenClassification, an MLP head keeps
transferkit's class with its code; both load back through AutoModelForTokenClassification with equal logits."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from transferkit.backbones import resolve_backbone
from transferkit.config import load_config
from transferkit.tasks.token_classification.model import build_token_model, save_token_model, to_standard

LABELS = ["O", "B-PER", "I-PER"]


@pytest.mark.parametrize(
    ("kind", "saved"),
    [("linear", "BertForTokenClassification"), ("mlp", "TransferkitForTokenClassification")],
)
def test_export_round_trip(kind, saved, tmp_path) -> None:
    cfg = load_config(None, ["data.train=x", "backbone.name=tiny-bert", f"head.kind={kind}"])
    spec = resolve_backbone(cfg.backbone)
    model = build_token_model(spec, cfg, LABELS).eval()
    torch.nn.init.normal_(model.head.output_layer.weight)  # a head that is not near zero
    assert (to_standard(model) is None) == (kind == "mlp")
    _, name = save_token_model(model, AutoTokenizer.from_pretrained(spec.tokenizer), tmp_path)
    assert name == saved and (tmp_path / "model" / "config.json").is_file()
    assert (tmp_path / "model" / "modeling_transferkit.py").is_file() == (kind == "mlp")
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path / "model").eval()
    assert type(loaded).__name__ == saved and loaded.config.id2label == dict(enumerate(LABELS))
    ids = torch.randint(5, 1000, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    with torch.no_grad():
        assert torch.allclose(
            model(input_ids=ids, attention_mask=mask).logits,
            loaded(input_ids=ids, attention_mask=mask).logits,
            atol=1e-5,
        )
