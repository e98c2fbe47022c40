"""The token-classification model: built from a backbone spec, exported as a plain transformers model.

Training uses :class:`TransferkitForTokenClassification` (``backbone`` + per-token ``head``), so every
strategy sees the same contract as in text classification. On save, a linear head is folded into the
backbone family's own ``*ForTokenClassification`` (e.g. ``BertForTokenClassification``) with ``id2label``,
so ``pipeline("token-classification", model=RUN/model)`` works with no remote code; the export is checked
to give the same logits. An MLP head (or a family without a token-classification class) is saved as
``TransferkitForTokenClassification`` with its code file (``trust_remote_code=True`` outside transferkit).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from transferkit.artifacts import MODELING_FILE
from transferkit.backbones import BackboneSpec, backbone_dict
from transferkit.config import RunConfig
from transferkit.remote_code.modeling_transferkit import TransferkitConfig, TransferkitForTokenClassification
from transferkit.utils.io import publish_folder

log = logging.getLogger("transferkit")

# in-process registration: transferkit loads its own saved MLP-head models without remote code
with contextlib.suppress(ValueError):  # already registered (by the text-classification model, or a reload)
    AutoConfig.register("transferkit", TransferkitConfig)
with contextlib.suppress(ValueError):  # already registered
    AutoModelForTokenClassification.register(TransferkitConfig, TransferkitForTokenClassification)

AUTO_MAP = {
    "AutoConfig": "modeling_transferkit.TransferkitConfig",
    "AutoModelForTokenClassification": "modeling_transferkit.TransferkitForTokenClassification",
}


def build_token_model(
    spec: BackboneSpec, cfg: RunConfig, labels: list[str]
) -> TransferkitForTokenClassification:
    """Backbone (pretrained weights if the spec has them) + a freshly initialised per-token head."""
    config = TransferkitConfig(
        backbone=backbone_dict(spec),
        pooling="none",
        head_kind=cfg.head.kind,
        head_hidden_size=cfg.head.hidden_size,
        head_dropout=cfg.head.dropout,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    torch.manual_seed(cfg.training.seed)
    model = TransferkitForTokenClassification(config)
    if spec.weights is not None:
        pretrained = AutoModel.from_pretrained(spec.weights, config=spec.config)
        model.backbone.load_state_dict(pretrained.state_dict(), strict=False)
    return model


def to_standard(model: TransferkitForTokenClassification) -> nn.Module | None:
    """The same network as the family's ``AutoModelForTokenClassification``, or None where that is impossible.

    Returns None for an MLP head, a family without a token-classification class, or an export whose
    logits differ from the original's (checked on a short random input).
    """
    if model.config.head_kind != "linear":
        return None
    config = copy.deepcopy(model.backbone.config)
    config.num_labels = model.config.num_labels
    config.id2label, config.label2id = dict(model.config.id2label), dict(model.config.label2id)
    try:
        standard = AutoModelForTokenClassification.from_config(config)
    except ValueError:
        return None
    result = standard.base_model.load_state_dict(model.backbone.state_dict(), strict=False)
    heads = [
        m
        for name, m in standard.named_modules()
        if isinstance(m, nn.Linear)
        and m.out_features == config.num_labels
        and not name.startswith(standard.base_model_prefix)
    ]
    if result.missing_keys or len(heads) != 1:
        return None
    with torch.no_grad():
        heads[0].weight.copy_(model.head.output_layer.weight)
        heads[0].bias.copy_(model.head.output_layer.bias)
    was_training = model.training
    model.eval()
    standard.eval()
    ids = torch.randint(5, min(1000, config.vocab_size), (2, 7))
    with torch.no_grad():
        same = torch.allclose(model(input_ids=ids).logits, standard(input_ids=ids).logits, atol=1e-4)
    model.train(was_training)
    return standard if same else None


def save_token_model(model: TransferkitForTokenClassification, tokenizer, run_dir: Path) -> tuple[Path, str]:
    """Saves under ``RUN/model`` (via ``model.partial``); returns the folder and the saved class name."""
    final = run_dir / "model"
    standard = to_standard(model)
    with publish_folder(final) as tmp:
        if standard is not None:
            standard.save_pretrained(tmp)
            saved = type(standard).__name__
        else:
            log.info(
                "the token model is saved with its own code (MLP head or no standard class for this family)"
            )
            model.config.auto_map = dict(AUTO_MAP)
            model.save_pretrained(tmp)
            shutil.copy(MODELING_FILE, tmp / MODELING_FILE.name)
            saved = type(model).__name__
        tokenizer.save_pretrained(tmp)
    return final, saved


def load_token_model(folder: str | Path) -> nn.Module:
    """Loads a saved token model (standard class or transferkit's own) for inference."""
    AutoConfig.from_pretrained(folder)  # clear error early for a broken folder
    return AutoModelForTokenClassification.from_pretrained(folder)
