"""Pruning (``torch.nn.utils.prune``) of a run's encoder, with an optional short recovery fine-tune.

What is pruned: the weight of every ``nn.Linear`` inside the backbone (attention projections and
feed-forward layers: ~95% of a BERT encoder's non-embedding weights). Embeddings, layer norms and the
head are left dense: they are small or look-up tables whose rows are all needed.

* ``magnitude``: in each layer the ``amount`` fraction of weights with the smallest |w| become 0
  (unstructured L1).
* ``structured``: in each layer the ``amount`` fraction of output neurons (weight rows) with the smallest
  L2 norm become 0.

Masks stay applied during the recovery fine-tune (pruned weights stay 0 while the rest adapt) and are then
made permanent (``prune.remove``), so the saved model is a plain one whose weights hold the zeros.
The saved tensors keep their dense shapes: pruning here reduces the parameters that matter (and the
size once compressed), not the dense-kernel latency; int8 quantization is what makes it faster.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

METHODS = ("magnitude", "structured")


def prunable_layers(model: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of the backbone (``model.backbone``), bottom to top."""
    return [m for m in model.backbone.modules() if isinstance(m, nn.Linear)]


def apply_pruning(model: nn.Module, amount: float, method: str = "magnitude") -> list[nn.Linear]:
    """Adds pruning masks to every backbone ``nn.Linear`` (weights read as ``weight_orig * weight_mask``).

    Args:
        model: A ``TransferkitForSequenceClassification``.
        amount: Fraction in [0, 1) of weights (magnitude) or output rows (structured) to zero per layer.
        method: "magnitude" or "structured".

    Returns:
        The pruned layers (pass them to :func:`make_permanent`).
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"prune amount must be in [0, 1), not {amount}")
    if method not in METHODS:
        raise ValueError(f"prune method must be one of {', '.join(METHODS)}, not {method!r}")
    layers = prunable_layers(model)
    for layer in layers:
        if method == "magnitude":
            prune.l1_unstructured(layer, "weight", amount=amount)
        else:  # (out, in) weight: dim=0 zeroes whole output neurons
            prune.ln_structured(layer, "weight", amount=amount, n=2, dim=0)
    return layers


def make_permanent(layers: list[nn.Linear]) -> None:
    """Folds each mask into its weight (``weight = weight_orig * mask``) and drops the re-parametrisation."""
    for layer in layers:
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")


@torch.no_grad()
def sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros among the weights of the backbone's ``nn.Linear`` layers."""
    layers = prunable_layers(model)
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    total = sum(layer.weight.numel() for layer in layers)
    return zeros / max(total, 1)
