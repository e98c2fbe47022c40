"""training.batch_norm: the rule, frozen layers, and the exact recalibration of running statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.training import batch_norm


def test_auto_freezes_a_pretrained_trunk_and_recalibrates_one_from_scratch() -> None:
    assert batch_norm.resolve("auto", pretrained=True) == "frozen"
    assert batch_norm.resolve("auto", pretrained=False) == "recalibrate"
    for mode in ("frozen", "train", "recalibrate"):
        assert batch_norm.resolve(mode, pretrained=True) == batch_norm.resolve(mode, pretrained=False) == mode


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))  # fmt: skip


def test_frozen_layers_stay_in_inference_mode_and_keep_their_statistics() -> None:
    net = _net()
    before = net[1].running_mean.clone()
    net.train()
    batch_norm.hold(net, "frozen")
    assert not net[1].training and not net[5].training and net[2].training  # dropout still trains
    net(torch.randn(4, 3, 8, 8) + 5)
    assert torch.equal(net[1].running_mean, before)
    net.train()
    batch_norm.hold(net, "train")  # PyTorch's own: the statistics move
    net(torch.randn(4, 3, 8, 8) + 5)
    assert not torch.equal(net[1].running_mean, before)


def test_recalibration_is_the_exact_average_over_the_batches_and_draws_no_random_numbers() -> None:
    net = _net()
    net.train()
    net[1].train(False)  # a mix of modes, restored afterwards
    data = [torch.randn(8, 3, 6, 6) * 2 + 3 for _ in range(5)]
    batches = [{"pixel_values": x, "labels": torch.zeros(8)} for x in data]
    rng = torch.get_rng_state()
    seen = batch_norm.recalibrate(net, batches, lambda m, b: m(b["pixel_values"]))
    assert seen == 40
    assert torch.equal(torch.get_rng_state(), rng)  # dropout was off: a seeded run is not shifted
    assert [m.training for m in net] == [True, False, True, True, True, True]
    assert net[1].momentum == net[5].momentum == 0.1
    conv = net[0](torch.cat(data))  # (40, 4, 4, 4): the first layer's inputs over the whole set
    torch.testing.assert_close(net[1].running_mean, conv.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    per_batch = torch.stack([net[0](x).var(dim=(0, 2, 3), unbiased=True) for x in data]).mean(0)
    torch.testing.assert_close(net[1].running_var, per_batch, rtol=1e-5, atol=1e-5)
    assert int(net[1].num_batches_tracked) == 5
    again = _net()
    again.load_state_dict(net.state_dict())
    batch_norm.recalibrate(again, batches, lambda m, b: m(b["pixel_values"]))
    assert torch.equal(
        again[5].running_var, net[5].running_var
    )  # repeatable: nothing depends on earlier stats


def test_a_model_without_batch_norm_is_left_alone() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert batch_norm.recalibrate(net, [{"x": torch.randn(2, 3)}], lambda m, b: m(b["x"])) == 0
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_unknown_mode_is_refused_by_the_config() -> None:
    from transferkit.config import TrainingConfig

    with pytest.raises(ValueError, match="batch_norm"):
        TrainingConfig(batch_norm="sometimes")


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int = 24):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 3, 6, 6, generator=g) * 3 + 2, torch.arange(n) % 2
        self.lengths = [1] * n

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def _stack(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@pytest.mark.parametrize("mode", ["recalibrate", "train"])
def test_the_loop_recalibrates_at_the_end_when_there_is_no_validation_set(mode: str) -> None:
    from transferkit.config import TrainingConfig
    from transferkit.strategies.base import StrategyPlan
    from transferkit.training.loop import train_loop

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip
    plan = StrategyPlan(param_groups=[{"params": list(net.parameters()), "lr": 1e-2, "weight_decay": 0.0}])
    cfg = TrainingConfig(max_steps=3, batch_size=8, batch_norm=mode, progress=False)
    data = _Images()
    result = train_loop(
        net, lambda m, b: m(b["pixel_values"]), plan, data, None, _stack, lambda logits: {}, cfg,
        "single_label", "f1_macro", tensorboard=False, pretrained=False,
    )  # fmt: skip
    assert result.batch_norm == mode and result.steps == 3
    exact = net[0](data.x).detach().mean(dim=(0, 2, 3))  # the first conv's outputs over the training set
    close = torch.allclose(net[1].running_mean, exact, atol=1e-4)
    assert close == (mode == "recalibrate")  # momentum 0.1 over 3 steps is still far from the data's mean
