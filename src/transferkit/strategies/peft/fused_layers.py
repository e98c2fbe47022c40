"""PEFT's LoRA (and AdaLoRA) linear layers, computed with less memory: the dropout fused into ``A`` and ``B``'s output added in
place.

PEFT's ``lora.Linear`` computes ``result = base(x) + lora_B(lora_A(dropout(x))) * scaling``. In training,
autograd then keeps ``dropout(x)`` (a full copy of the layer's input, for ``lora_A``'s weight gradient) and
dropout's mask (a float tensor on CPU), 8 bytes per input element, for every adapted layer, even where several
layers read the same input (query, key, value); and each call allocates three more
output-sized tensors (``lora_B``'s output, its scaled copy, the sum). With LoRA on every linear layer of
MiniLM-L6 the saved activations were 1.37x those of full fine-tuning, and the churn of large short-lived
tensors fragmented the heap, so LoRA's peak RSS came out above full's although it keeps no optimizer state
for the trunk.

:func:`fuse_lora_layers` switches PEFT's layers (in place, their class only) to :class:`FusedLoraLinear`
(created on first use, a subclass of PEFT's ``lora.Linear``). Its parameters, modules, state-dict keys,
merging, saving and loading are PEFT's own; only the forward pass differs, and only in the plain case (one or
more vanilla LoRA adapters, not merged, no per-example adapter names, no DoRA-style variants, no ``lora_B``
bias); every other case runs PEFT's forward. In the plain case:

- ``lora_A(dropout(x))`` is one autograd function keeping ``x`` (which LoRA without dropout keeps too, once
  for all the layers that read it) and a boolean mask, 1 byte per element instead of 8. The mask takes 16 random bits per element from torch's
  global generator (:func:`keep_mask`, several times faster than ``bernoulli_`` on CPU), so seeded runs
  repeat and resumed runs continue exactly; ``p`` is rounded to 1/65536 and kept values are scaled by
  ``1 / P(keep)``.
- ``B``'s product is added into ``base(x)``'s output in place (``addmm_`` with ``alpha=scaling``), which
  needs no output-sized temporary.

AdaLoRA's ``SVDLinear`` (``dropout(x) @ (A * E).T @ B.T * scaling / ranknum``) gets the same treatment
(:class:`FusedSVDLinear`).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 2**16  # p is rounded to a multiple of 1 / 65536


def keep_mask(shape: torch.Size, p: float, device=None) -> tuple[torch.Tensor, float]:
    """A ``uint8`` mask of ones (kept, probability ``1 - p``, ``p`` rounded to 1/65536) and zeros, and the scale
    ``1 / P(keep)`` that makes the kept values unbiased.

    The draw is 16 random bits per element cut from 64-bit words of torch's global generator: on CPU several
    times faster than ``torch.rand`` or ``bernoulli_``, which draw one 32-bit number per element. The mask is
    ``uint8`` rather than ``bool`` because multiplying by it is about twice as fast on CPU as by a ``bool``
    mask or through ``masked_fill``.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    dropped = round(p * _LEVELS)
    keep = words.view(torch.int16)[:n].view(shape) >= dropped - _LEVELS // 2
    return keep.view(torch.uint8), _LEVELS / (_LEVELS - dropped)


class DropoutLinearFn(torch.autograd.Function):
    """``linear(dropout(x, p), weight)`` without a bias, keeping ``x`` and a 1-byte mask for the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
        keep, scale = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(x, weight, keep)
        ctx.scale = scale
        return F.linear(x * keep, weight).mul_(scale)  # scaled on the small (..., r) side

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight, keep = ctx.saved_tensors
        # under autocast the forward's output (so grad_out) is bf16 while x and the weight are fp32: the
        # backward runs outside autocast, so the (..., r)-sized products are done in x's dtype
        grad = (grad_out * ctx.scale).to(x.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = grad.reshape(-1, grad.shape[-1]).t().mm((x * keep).reshape(-1, x.shape[-1]))
            grad_w = grad_w.to(weight.dtype)
        if ctx.needs_input_grad[0]:
            grad_x = grad.matmul(weight.to(x.dtype)).mul_(keep)
        return grad_x, grad_w, None


def dropout_linear(x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
    """``F.linear(F.dropout(x, p), weight)`` keeping ``x`` and a 1-byte mask instead of a dropped copy of ``x``."""
    if p == 0.0:
        return F.linear(x, weight)
    return DropoutLinearFn.apply(x, weight, p)


def _dropout_p(drop: nn.Module) -> float:
    """The dropout rate PEFT's dropout module applies now (0 in eval mode or for ``nn.Identity``)."""
    return drop.p if isinstance(drop, nn.Dropout) and drop.training else 0.0


def _add_product(result: torch.Tensor, h: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """``result + alpha * h @ b.T`` for ``h`` (..., r) and ``b`` (out, r): in place (``addmm_``, no output-sized
    temporary) where ``result`` allows it."""
    if result.is_contiguous() and result.dtype == h.dtype:
        # under autocast (bf16) ``result`` and ``h`` are bf16 but ``b`` stays fp32, and in-place ops are not
        # autocast: cast the small (out, r) factor instead (differentiable, so B's gradient stays fp32)
        b = b if b.dtype == h.dtype else b.to(h.dtype)
        result.view(-1, result.shape[-1]).addmm_(h.reshape(-1, h.shape[-1]), b.t(), alpha=alpha)
        return result
    return result + (F.linear(h, b) * alpha).to(result.dtype)


@functools.cache
def fused_class() -> type:
    """:class:`FusedLoraLinear`, made on first use (peft loads lazily)."""
    # peft, scipy, psutil load on first use, not when fused_layers is imported
    from peft.tuners.lora.layer import Linear

    class FusedLoraLinear(Linear):
        """PEFT's ``lora.Linear`` with the lean forward pass described in :mod:`transferkit.strategies.peft.fused_layers`."""

        def _plain(self, args: tuple, kwargs: dict) -> bool:
            return not (
                args
                or kwargs
                or self.disable_adapters
                or self.merged
                or self.lora_variant
                or any(self.lora_bias.get(a, False) for a in self.active_adapters)
            )

        def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if not self._plain(args, kwargs):
                return super().forward(x, *args, **kwargs)
            result = self.base_layer(x)
            for name in self.active_adapters:
                if name not in self.lora_A:
                    continue
                a, b = self.lora_A[name], self.lora_B[name]
                xa = self._cast_input_dtype(x, a.weight.dtype)
                h = dropout_linear(xa, a.weight, _dropout_p(self.lora_dropout[name]))  # (..., r)
                result = _add_product(result, h, b.weight, self.scaling[name])
            return result

    return FusedLoraLinear


@functools.cache
def fused_svd_class() -> type:
    """:class:`FusedSVDLinear`: AdaLoRA's ``SVDLinear`` with the same lean forward pass."""
    # peft, scipy, psutil load on first use, not when fused_layers is imported
    from peft.tuners.adalora.layer import SVDLinear

    class FusedSVDLinear(SVDLinear):
        """AdaLoRA's ``SVDLinear``: ``dropout(x) @ (A * E).T`` through :func:`dropout_linear`, ``B``'s product
        added in place with ``alpha = scaling / (ranknum + 1e-5)``."""

        def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if args or kwargs or self.disable_adapters or self.merged:
                return super().forward(x, *args, **kwargs)
            result = self.base_layer(x)
            for name in self.active_adapters:
                if name not in self.lora_A:
                    continue
                a, e = self.lora_A[name], self.lora_E[name]
                xa = self._cast_input_dtype(x, a.dtype)
                # (..., r); gradients reach A and E through the product
                h = dropout_linear(xa, a * e, _dropout_p(self.lora_dropout[name]))
                alpha = self.scaling[name] / (float(self.ranknum[name]) + 1e-5)
                result = _add_product(result, h, self.lora_B[name], alpha)
            return result

    return FusedSVDLinear


def fuse_lora_layers(module: nn.Module) -> int:
    """Switches every PEFT ``lora.Linear`` and AdaLoRA ``SVDLinear`` inside ``module`` (exactly those classes,
    not their quantised or convolutional relatives) to :class:`FusedLoraLinear` / :class:`FusedSVDLinear`, in
    place; returns how many it switched."""
    # peft, scipy, psutil load on first use, not when fused_layers is imported
    from peft.tuners.adalora.layer import SVDLinear

    # peft, scipy, psutil load on first use, not when fused_layers is imported
    from peft.tuners.lora.layer import Linear

    swaps = {Linear: fused_class(), SVDLinear: fused_svd_class()}
    count = 0
    for layer in module.modules():
        if type(layer) in swaps:
            layer.__class__ = swaps[type(layer)]
            count += 1
    return count
