"""The lean LoRA layer (``strategy.fused``): same math and files as PEFT's, less memory kept for the backward."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import AdaLoraConfig, LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from transferkit.backbones import resolve_backbone
from transferkit.config import load_config
from transferkit.strategies import STRATEGIES, strategy_settings
from transferkit.strategies.peft.fused_layers import (
    dropout_linear,
    fuse_lora_layers,
    fused_class,
    fused_svd_class,
    keep_mask,
)
from transferkit.tasks.text_classification.model import build_model


def _adapted(
    dropout: float, net: nn.Module | None = None, targets=("0", "2"), method: str = "lora"
) -> nn.Module:
    torch.manual_seed(0)
    net = net or nn.Sequential(nn.Linear(12, 24), nn.GELU(), nn.Linear(24, 6))
    common = {"lora_alpha": 8, "lora_dropout": dropout, "target_modules": list(targets)}
    if method == "lora":
        config = LoraConfig(r=4, **common)
    else:
        config = AdaLoraConfig(init_r=4, target_r=2, total_step=10, **common)
    model = get_peft_model(net, config)
    with torch.no_grad():  # B (LoRA) and E (AdaLoRA) start at zero: give them weights so the adapter counts
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_E" in name:
                p.normal_(0, 0.5)
    return model


def _saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of ``fn()``, parameters excluded."""
    seen: dict[int, int] = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_keep_mask_keeps_one_minus_p_and_scales_to_an_unbiased_mean() -> None:
    torch.manual_seed(0)
    keep, scale = keep_mask(torch.Size([1000, 1000]), 0.3)
    assert keep.dtype == torch.uint8 and keep.shape == (1000, 1000) and set(keep.unique().tolist()) == {0, 1}
    rate = keep.float().mean().item()
    assert abs(rate - 0.7) < 0.003  # 1e6 draws: sd 0.00046
    assert scale == pytest.approx(1 / 0.7, rel=1e-4)
    assert (keep.float() * scale).mean().item() == pytest.approx(1.0, abs=0.005)
    torch.manual_seed(0)
    assert torch.equal(keep_mask(torch.Size([1000, 1000]), 0.3)[0], keep)  # the global generator decides
    assert keep_mask(torch.Size([7, 5]), 0.0)[0].all()


def test_dropout_linear_equals_dropout_then_linear_with_the_same_mask() -> None:
    x = torch.randn(3, 5, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    torch.manual_seed(1)
    out = dropout_linear(x, w, 0.25)
    (out * torch.arange(out.numel()).view_as(out)).sum().backward()
    torch.manual_seed(1)
    keep, scale = keep_mask(x.shape, 0.25)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = nn.functional.linear(x2 * keep * scale, w2)
    (ref * torch.arange(ref.numel()).view_as(ref)).sum().backward()
    assert not keep.all() and keep.any()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)


@pytest.mark.parametrize("method", ["lora", "adalora"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_layers_give_peft_outputs_and_gradients(dropout: float, method: str) -> None:
    stock = _adapted(dropout, method=method)
    fused = copy.deepcopy(stock)
    assert fuse_lora_layers(fused) == 2
    kind = fused_class() if method == "lora" else fused_svd_class()
    assert sum(type(m) is kind for m in fused.modules()) == 2
    assert list(fused.state_dict()) == list(stock.state_dict())  # same parameters, same keys
    x = torch.randn(8, 12)
    for model in (stock, fused):
        model.eval()
    torch.testing.assert_close(fused(x), stock(x))
    if dropout == 0.0:  # no random draws: training steps are comparable too
        for model in (stock, fused):
            model.train()
            model(x).square().sum().backward()
        for (name, p), q in zip(stock.named_parameters(), fused.parameters(), strict=True):
            if p.requires_grad:
                torch.testing.assert_close(q.grad, p.grad, msg=name)
    with fused.disable_adapter(), stock.disable_adapter():  # PEFT's own paths still work on fused layers
        base = fused(x)
        torch.testing.assert_close(base, stock(x))
    assert not torch.allclose(fused(x), base)  # the adapter does change the output
    merged = copy.deepcopy(fused).merge_and_unload()
    assert not any(isinstance(m, PeftLoraLinear) for m in merged.modules())
    torch.testing.assert_close(merged(x), stock(x), rtol=1e-5, atol=1e-5)


class _Attention(nn.Module):
    """One input read by three adapted layers, as a transformer's query, key and value read the hidden states."""

    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(12, 12) for _ in range(3))

    def forward(self, x):
        return self.query(x) * self.key(x) + self.value(x)


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_fused_training_keeps_less_for_the_backward_and_still_drops_out(method: str) -> None:
    stock = _adapted(0.1, _Attention(), ("query", "key", "value"), method)
    fused = copy.deepcopy(stock)
    fuse_lora_layers(fused)
    x = torch.randn(64, 12, requires_grad=True)
    stock.train(), fused.train()
    kept_stock = _saved_bytes(lambda: stock(x))
    kept_fused = _saved_bytes(lambda: fused(x))
    # Per layer PEFT keeps a dropped copy of x (4 bytes/element) and dropout's mask (on CPU a float: 4), 3 x 8;
    # fused keeps x once and three 1-byte masks, 4 + 3. Both keep the same q and k for the product.
    assert kept_stock - kept_fused >= (3 * 8 - (4 + 3)) * x.numel()
    torch.manual_seed(3)
    a = fused(x)
    torch.manual_seed(4)
    assert not torch.allclose(a, fused(x))  # training draws a mask
    torch.manual_seed(3)
    torch.testing.assert_close(fused(x), a)  # ...from the global generator: seeded runs repeat


@pytest.mark.parametrize("fused", [True, False])
def test_lora_strategy_fuses_unless_told_not_to(fused: bool) -> None:
    cfg = load_config(
        None, ["data.train=x.csv", "backbone.name=tiny-bert", "strategy.name=lora", f"strategy.fused={fused}"]
    )
    model = build_model(resolve_backbone(cfg.backbone), cfg, ["neg", "pos"])
    STRATEGIES.get("lora").apply(model, strategy_settings(cfg.strategy), cfg.training)
    kinds = {type(m) for m in model.backbone.modules() if isinstance(m, PeftLoraLinear)}
    assert kinds == ({fused_class()} if fused else {PeftLoraLinear})
