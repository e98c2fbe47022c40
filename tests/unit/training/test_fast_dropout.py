"""Dropout with 16-bit masks while training (``training.fast_dropout``): the distribution, the gradient, the
seeded repeat, and which modules switch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.training import fast_dropout
from transferkit.training.fast_dropout import MaskDropout


def test_mask_dropout_drops_p_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    drop = MaskDropout(0.1).train()
    x = torch.ones(200_000)
    y = drop(x)
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(0.1, abs=0.005)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - round(0.1 * 65536))))
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)  # unbiased
    assert torch.equal(drop.eval()(x), x)  # eval mode: the identity


def test_gradient_is_the_same_mask_and_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 33, dtype=torch.float32, requires_grad=True)
    y = MaskDropout(0.3).train()(x)
    g = torch.randn_like(y)
    y.backward(g)
    keep = (y != 0).float()
    scale = 65536 / (65536 - round(0.3 * 65536))
    torch.testing.assert_close(x.grad, g * keep * scale)
    torch.testing.assert_close(y, x.detach() * keep * scale)


def test_bf16_inputs_stay_bf16() -> None:
    y = MaskDropout(0.1).train()(torch.randn(8, 16, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


def test_seeded_masks_repeat() -> None:
    drop = MaskDropout(0.5).train()
    torch.manual_seed(7)
    a = drop(torch.ones(1000))
    torch.manual_seed(7)
    b = drop(torch.ones(1000))
    assert torch.equal(a, b)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.dropout = nn.Dropout(0.1)
        self.lora_dropout = nn.ModuleDict({"default": nn.Dropout(0.1)})  # PEFT's: left alone
        self.inner = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2))


def test_install_switches_plain_dropout_only_and_uninstall_restores() -> None:
    block = Block()
    assert fast_dropout.install(block) == 2
    assert type(block.dropout) is MaskDropout and type(block.inner[1]) is MaskDropout
    assert type(block.lora_dropout["default"]) is nn.Dropout
    assert block.inner[1].p == 0.2
    fast_dropout.uninstall(block)
    assert all(type(m) is not MaskDropout for m in block.modules())
    assert fast_dropout.install(Block(), enabled=False) == 0
