"""A causal LM seen through the backbone contract: ``backbone`` (the decoder stack), ``head`` (the LM head).

Strategies act on ``model.backbone`` (embeddings, blocks, final norm as layer groups) and ``model.head``
(``head.output_layer`` is the vocabulary projection). The wrapped Hugging Face model (``model.lm``) is kept
outside the module tree, so every weight is registered once; it shares the very same modules, so adapters
that PEFT injects into ``backbone`` in place are used by ``model.lm.generate`` too.

Only the positions whose next token is scored need the vocabulary projection: ``forward(..., predict_mask=)``
projects just those hidden states, (N, V) instead of (B, T, V). With prompts masked out of the loss that skips
most of the output layer's work (a fifth of a 135M model's compute per token) and its largest activations.

Most small LMs tie the output layer to the input embeddings; the state dict then holds that matrix once
(under ``backbone.``), so checkpoints (safetensors refuses shared tensors) and best-state restores work.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from transferkit.backbones import BackboneSpec
from transferkit.errors import ConfigError
from transferkit.strategies.base import StrategyPlan
from transferkit.tasks.generation.data import IGNORE, predict_mask
from transferkit.utils.io import publish_folder

log = logging.getLogger("transferkit")


class LMHead(nn.Module):
    """The vocabulary projection as the model's head: (B, T, D) -> (B, T, V)."""

    def __init__(self, output_layer: nn.Module):
        super().__init__()
        self.output_layer = output_layer

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output_layer(hidden)


class CausalLMTransfer(nn.Module):
    """``backbone`` + ``head`` views of a transformers causal LM; ``forward`` returns (B, T, V) logits."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.__dict__["lm"] = lm  # not a submodule: its weights are registered once, below
        self.backbone = lm.get_submodule(lm.base_model_prefix)
        self.head = LMHead(lm.get_output_embeddings())
        self.config = lm.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, predict_mask=None) -> torch.Tensor:
        """(B, T, V) logits; with ``predict_mask`` (B, T) bool, (N, V) logits of the N masked positions in
        row-major order."""
        if predict_mask is None or not self.plain_head:
            logits = self.lm(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            ).logits
            return logits if predict_mask is None else logits[predict_mask]
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (B, T, D)
        return self.head(hidden[predict_mask])  # (N, V)

    @property
    def plain_head(self) -> bool:
        """True when the LM's logits are just ``head(last hidden state)`` (no soft-capping or scaling)."""
        c = self.config
        return not any(
            getattr(c, name, None) for name in ("final_logit_softcapping", "logit_scale", "logits_scaling")
        )

    @property
    def tied(self) -> bool:
        """True when the output layer's weight is the input embedding matrix."""
        return self.head.output_layer.weight is self.lm.get_input_embeddings().weight

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        seen: set[int] = set()
        for key in list(sd):  # drop aliases (a tied head): each tensor appears once
            ptr = sd[key].untyped_storage().data_ptr() if sd[key].numel() else id(sd[key])
            if ptr in seen:
                del sd[key]
            seen.add(ptr)
        return sd


def build_causal_lm(spec: BackboneSpec, seed: int) -> CausalLMTransfer:
    """The pretrained causal LM of ``spec`` (random weights, seeded, when the spec has none)."""

    torch.manual_seed(seed)
    if spec.weights is None:
        lm = AutoModelForCausalLM.from_config(spec.config)
    else:
        lm = AutoModelForCausalLM.from_pretrained(spec.weights, config=spec.config, dtype=torch.float32)
    return CausalLMTransfer(lm)


def nll_per_example(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, 2): summed negative log-likelihood of each row's labelled tokens, and how many there are.

    Position t predicts token t + 1: logits (B, T, V)[:, :-1] score labels (B, T)[:, 1:]. Logits (N, V) are
    those of the :func:`predict_mask` positions only, in row-major order.
    """
    target = labels[:, 1:]
    if logits.ndim == 2:
        keep = target != IGNORE
        rows = keep.nonzero()[:, 0]
        nll = F.cross_entropy(logits.float(), target[keep], reduction="none")
        sums = torch.zeros(len(labels), dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll)
        return torch.stack([sums, keep.sum(1).to(nll.dtype)], dim=1)
    nll = F.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), target, ignore_index=IGNORE, reduction="none"
    )
    return torch.stack([nll.sum(1), (target != IGNORE).sum(1).float()], dim=1)


def lm_forward(module: nn.Module, batch: dict) -> torch.Tensor:
    """The training loop's forward: logits while training ((N, V) at the batch's ``predict_mask`` positions,
    which the collator adds; else (B, T, V)); (B, 2) NLL sums and token counts when the batch carries
    ``labels`` (evaluation), so no (N, T, V) logits pile up.

    Packed rows (``position_ids``) run without an attention mask: transformers then reads each restart of the
    positions as a new sequence and masks attention block-diagonally.
    """
    inputs = {"input_ids": batch["input_ids"]}
    if "position_ids" in batch:
        inputs["position_ids"] = batch["position_ids"]
    else:
        inputs["attention_mask"] = batch["attention_mask"]
    if "predict_mask" in batch:
        inputs["predict_mask"] = batch["predict_mask"]
    elif "labels" in batch:
        inputs["predict_mask"] = predict_mask(batch["labels"])
    logits = module(**inputs)
    if "labels" in batch:
        return nll_per_example(logits, batch["labels"])
    return logits


ALL_WEIGHTS = ("full", "discriminative")  # strategies whose LM head trains by default


def load_tokenizer(source: str):
    """The backbone's tokenizer, with a padding token (EOS when it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_lm(lm, tokenizer, run_dir: Path) -> Path:
    """Saves a plain Hugging Face causal LM (``AutoModelForCausalLM``-loadable) to ``run_dir/model``."""
    final = run_dir / "model"
    with publish_folder(final) as tmp:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return final


# head, linear-probe, lp-ft and gradual are refused by the task's spec before fit; others by their plan here


def refuse(name: str) -> ConfigError:
    return ConfigError(
        f"strategy.name: {name!r} trains a new head on pooled features or unfreezes from one; it does not "
        "apply to generation. Use full, lora, adalora, ia3, top-k or discriminative"
    )


def check_plan(name: str, plan: StrategyPlan) -> None:
    if plan.closed_form or plan.probe_init or plan.cache == "features" or plan.stages:
        raise refuse(name)
    if (
        plan.cache == "hidden"
    ):  # the hidden-state cache pools for a classifier; a causal LM re-runs the bottom
        plan.cache = None


def head_policy(model: CausalLMTransfer, plan: StrategyPlan, train_head: bool) -> None:
    """Freezes the LM head unless it should train; keeps each trainable parameter in one optimizer group."""
    if not train_head:
        if model.tied and any(p.requires_grad for p in model.backbone.get_input_embeddings().parameters()):
            log.info(
                "the LM head is tied to the input embeddings: both stay frozen (generation.train_lm_head)"
            )
        model.head.requires_grad_(False)
    seen: set[int] = set()
    groups = []
    for g in plan.param_groups:  # a tied head appears under backbone and head: keep its first group
        params = [p for p in g["params"] if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({**g, "params": params})
    plan.param_groups = groups
