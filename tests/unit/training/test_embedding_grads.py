"""Row gradients for trainable word embeddings (``training.row_embedding_grads``): PyTorch's dense gradient
values, one buffer kept across steps, and the cases that must stay dense."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import transferkit
from transferkit.training import embedding_grads

FAST = ["training.progress=false", "evaluation.pretrained_baseline=false", "output.tensorboard=false"]


class Tiny(nn.Module):
    def __init__(self, vocab: int = 50, width: int = 8, tie: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, width, padding_idx=0)
        self.out = nn.Linear(width, vocab, bias=False)
        if tie:
            self.out.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(ids))).logsumexp(-1).sum()


@pytest.fixture
def everything(monkeypatch):
    monkeypatch.setattr(embedding_grads, "MIN_ELEMENTS", 0)


def _dense_grad(model: Tiny, *batches: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    for ids in batches:
        model(ids).backward()
    return model.embed.weight.grad.clone()


def test_row_gradients_equal_dense_ones_step_after_step(everything) -> None:
    torch.manual_seed(0)
    dense, rows = Tiny(), Tiny()
    rows.load_state_dict(dense.state_dict())
    assert embedding_grads.install(rows) == 1
    assert rows.embed.sparse
    batches = [torch.randint(0, 50, (4, 7)) for _ in range(3)]
    buffers = set()
    for ids in batches:  # each step touches other rows: the previous step's rows must be zeroed
        want = _dense_grad(dense, ids)
        rows.zero_grad(set_to_none=True)
        rows(ids).backward()
        got = rows.embed.weight.grad
        assert not got.is_sparse
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        assert float(got[0].abs().sum()) == 0.0  # padding_idx gets no gradient, as dense
        buffers.add(got.data_ptr())
    assert len(buffers) == 1  # one buffer, kept across steps


def test_accumulated_micro_batches_sum_like_dense(everything) -> None:
    torch.manual_seed(1)
    dense, rows = Tiny(), Tiny()
    rows.load_state_dict(dense.state_dict())
    embedding_grads.install(rows)
    a, b, c = (torch.randint(1, 50, (3, 5)) for _ in range(3))
    rows.zero_grad(set_to_none=True)
    rows(a).backward()
    rows(b).backward()  # accumulates into the buffer
    torch.testing.assert_close(rows.embed.weight.grad, _dense_grad(dense, a, b), rtol=0, atol=1e-6)
    rows.zero_grad(set_to_none=True)
    rows(c).backward()  # rows of both a and b must be cleared now
    torch.testing.assert_close(rows.embed.weight.grad, _dense_grad(dense, c), rtol=0, atol=1e-6)


def test_dense_cases_are_left_alone(monkeypatch) -> None:
    tied = Tiny(tie=True)
    monkeypatch.setattr(embedding_grads, "MIN_ELEMENTS", 0)
    assert embedding_grads.install(tied) == 0  # shared with the output layer: it also gets a dense gradient
    frozen = Tiny()
    frozen.embed.requires_grad_(False)
    assert embedding_grads.install(frozen) == 0
    assert embedding_grads.install(Tiny(), distributed=True) == 0
    assert embedding_grads.install(Tiny(), enabled=False) == 0
    monkeypatch.setattr(embedding_grads, "MIN_ELEMENTS", 1 << 20)
    small = Tiny()
    assert embedding_grads.install(small) == 0 and not small.embed.sparse


def test_install_is_idempotent_and_uninstall_restores_dense(everything) -> None:
    model = Tiny()
    assert embedding_grads.install(model) == 1
    assert embedding_grads.install(model) == 1
    embedding_grads.uninstall(model)
    assert not model.embed.sparse
    model(torch.randint(0, 50, (2, 3))).backward()
    assert not model.embed.weight.grad.is_sparse  # PyTorch's own dense gradient again
    assert not hasattr(model.embed, "_transferkit_rows")


def _fit(train: Path, out: Path, *overrides: str, strategy: str = "full"):
    return transferkit.fit(
        train=str(train), backbone="tiny-bert", strategy=strategy, epochs=2, output=str(out),
        overrides=[*FAST, "training.batch_size=8", *overrides],
    )  # fmt: skip


# gradual: the embeddings become trainable in a later stage (hooks installed mid-run); lp-ft: two stages
@pytest.mark.parametrize("strategy", ["full", "gradual", "lp-ft", "discriminative"])
def test_fit_with_row_gradients_matches_dense(
    toy_csv: Path, tmp_path: Path, everything, monkeypatch, strategy: str
) -> None:
    calls = {"n": 0}
    inner = embedding_grads.RowGradients._accumulated

    def counted(self, weight):
        calls["n"] += 1
        return inner(self, weight)

    monkeypatch.setattr(embedding_grads.RowGradients, "_accumulated", counted)
    if strategy == "gradual":  # reach the embeddings' group within the two epochs
        overrides = ["strategy.every_epochs=0.25"]
    else:
        overrides = []
    rows = _fit(toy_csv, tmp_path / "rows", *overrides, strategy=strategy)
    used = calls["n"]
    dense = _fit(
        toy_csv, tmp_path / "dense", *overrides, "training.row_embedding_grads=false", strategy=strategy
    )
    assert used > 0 and calls["n"] == used  # the setting switches the row path on and off
    a = load_file(rows.run_dir / "model" / "model.safetensors")
    b = load_file(dense.run_dir / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    for key in ("accuracy", "f1_macro", "roc_auc"):
        assert rows.metrics["test"][key] == pytest.approx(dense.metrics["test"][key], abs=1e-6)
