"""The training loop: seeded reproducibility, length-grouped batches, early stopping, class weights and
gradient accumulation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import transferkit
from transferkit.config import load_config
from transferkit.data.text import LengthGroupedBatchSampler
from transferkit.training.losses import balanced_class_weights, compute_loss

FAST = ["training.progress=false", "evaluation.pretrained_baseline=false", "output.tensorboard=false"]


def _fit(train: Path, out: Path, *overrides: str, epochs: float = 1):
    return transferkit.fit(
        train=str(train),
        backbone="tiny-bert",
        strategy="full",
        epochs=epochs,
        output=str(out),
        overrides=[*FAST, *overrides],
    )


def _tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


def _outcome(metrics: dict) -> dict:
    """Everything in metrics.json except wall-clock timings."""
    out = {k: v for k, v in metrics.items() if k != "training"}
    out["steps"] = metrics["training"]["steps"]
    out["stopped_early"] = metrics["training"]["stopped_early"]
    return out


# --- reproducibility ----------------------------------------------------------------------------------


def test_same_seed_same_run(tiny_run, tmp_path: Path) -> None:
    # Replay the shared run from its own saved config, only the output folder changed.
    cfg = load_config(tiny_run.run_dir / "config.yaml", [f"output.dir={tmp_path / 'again'}"])
    again = transferkit.fit(cfg)
    assert _outcome(again.metrics) == _outcome(tiny_run.metrics)
    a, b = _tensors(tiny_run.run_dir), _tensors(again.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_different_seed_different_weights(tiny_run, tmp_path: Path) -> None:
    seed = load_config(tiny_run.run_dir / "config.yaml").training.seed + 1
    cfg = load_config(
        tiny_run.run_dir / "config.yaml", [f"output.dir={tmp_path / 'other'}", f"training.seed={seed}"]
    )
    other = transferkit.fit(cfg)
    a, b = _tensors(tiny_run.run_dir), _tensors(other.run_dir)
    assert any(not torch.equal(a[k], b[k]) for k in a)


# --- LengthGroupedBatchSampler ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lengths() -> np.ndarray:
    return np.random.default_rng(0).integers(1, 200, size=1000)


def _spread(batches: list[list[int]], lengths: np.ndarray) -> float:
    return float(np.mean([lengths[b].max() - lengths[b].min() for b in batches]))


def test_sampler_yields_every_index_once_per_epoch(lengths: np.ndarray) -> None:
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 63  # ceil(1000 / 16)
        assert all(1 <= len(b) <= 16 for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_sampler_groups_similar_lengths(lengths: np.ndarray) -> None:
    grouped = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1).batches()
    plain = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1, group_by_length=False).batches()
    assert sorted(i for b in plain for i in b) == list(range(len(lengths)))
    assert _spread(grouped, lengths) < 0.25 * _spread(plain, lengths)


def test_sampler_order_depends_on_seed_and_epoch_only(lengths: np.ndarray) -> None:
    a = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1)
    b = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1)
    first = a.batches()
    a.set_epoch(1)
    second = a.batches()
    assert first != second  # reshuffled every epoch
    b.set_epoch(1)
    assert b.batches() == second  # same (seed, epoch), same order
    b.set_epoch(0)
    assert b.batches() == first
    assert LengthGroupedBatchSampler(lengths, batch_size=16, seed=2).batches() != first


def test_eval_sampler_is_sorted_and_unshuffled(lengths: np.ndarray) -> None:
    batches = LengthGroupedBatchSampler(lengths, batch_size=16, seed=1, shuffle=False).batches()
    order = [i for b in batches for i in b]
    assert sorted(order) == list(range(len(lengths)))
    assert list(lengths[order]) == sorted(lengths, reverse=True)


# --- early stopping -----------------------------------------------------------------------------------


def _history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "logs" / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "validation" in r]


def test_early_stopping(toy_csv: Path, tmp_path: Path) -> None:
    epochs = 30
    # A learning rate so small nothing changes: the validation metric cannot improve, patience runs out.
    result = _fit(
        toy_csv,
        tmp_path / "run",
        "training.learning_rate=1e-9",
        "training.head_learning_rate=1e-9",
        "training.early_stopping_patience=1",
        epochs=epochs,
    )
    training = result.metrics["training"]
    assert training["stopped_early"] is True
    steps_per_epoch = 3  # 96 training rows, batch 32
    assert training["steps"] < epochs * steps_per_epoch
    history = _history(result.run_dir)
    assert len(history) >= 2
    assert history[-1]["step"] == training["steps"]
    best = result.metrics["best_validation_metric"]
    assert best["name"] == "f1_macro"
    values = [r["validation"]["f1_macro"] for r in history]
    assert best["value"] == pytest.approx(max(values))
    assert best["step"] == history[values.index(max(values))]["step"]


def test_resume_after_an_early_stop_trains_no_further(toy_csv: Path, tmp_path: Path) -> None:
    # A kill during the final save of a run that stopped early leaves the stop step's checkpoint; the
    # resumed run used to train on past it (until patience ran out again), ending with other steps/weights.
    stop = ["training.learning_rate=1e-9", "training.early_stopping_patience=1"]
    first = _fit(toy_csv, tmp_path / "run", *stop, epochs=30)
    assert first.metrics["training"]["stopped_early"] is True
    steps = first.metrics["training"]["steps"]
    for name in ("metrics.json", "model"):  # as if killed while writing the outputs
        path = first.run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    resumed = transferkit.fit(resume=first.run_dir).metrics
    assert resumed["training"]["resumed_from_step"] == steps
    assert resumed["training"]["steps"] == steps and resumed["training"]["stopped_early"] is True
    assert _outcome(resumed) == _outcome(first.metrics)


def test_resume_from_a_checkpoint_older_than_the_stopped_flag_trains_no_further(
    toy_csv: Path, tmp_path: Path
) -> None:
    # Checkpoints written before LoopState.stopped existed hold the same state without it; their
    # evaluations-since-best count says whether patience had run out.
    from transferkit.training.checkpoint import STATE_FILE, list_checkpoints, write_marker

    stop = ["training.learning_rate=1e-9", "training.early_stopping_patience=1"]
    first = _fit(toy_csv, tmp_path / "run", *stop, epochs=30)
    assert first.metrics["training"]["stopped_early"] is True
    steps = first.metrics["training"]["steps"]
    for name in ("metrics.json", "model"):  # as if killed while writing the outputs
        path = first.run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    checkpoints = list_checkpoints(first.run_dir / "checkpoints")
    assert int(checkpoints[-1].name[5:]) == steps
    for checkpoint in checkpoints:  # as the code before the flag wrote them
        state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
        assert state["loop"]["state"].pop("stopped") is (checkpoint == checkpoints[-1])
        torch.save(state, checkpoint / STATE_FILE)
        write_marker(checkpoint, int(checkpoint.name[5:]))
    resumed = transferkit.fit(resume=first.run_dir).metrics
    assert resumed["training"]["resumed_from_step"] == steps
    assert resumed["training"]["steps"] == steps and resumed["training"]["stopped_early"] is True
    assert _outcome(resumed) == _outcome(first.metrics)


@pytest.mark.parametrize(
    ("saved", "patience", "stopped"),
    [
        ({"bad_evals": 2}, 3, False),  # an old checkpoint, patience not yet exhausted: train on
        ({"bad_evals": 3}, 3, True),  # an old checkpoint written at the stop
        ({"bad_evals": 7}, None, False),  # never stops early without patience
        ({"bad_evals": 3, "stopped": False}, 3, False),  # a saved flag is what the run did
        ({"bad_evals": 0, "stopped": True}, 3, True),
    ],
)
def test_loop_state_from_a_checkpoint_with_or_without_the_stopped_flag(
    saved: dict, patience: int | None, stopped: bool
) -> None:
    from transferkit.training.state import LoopState

    state = LoopState.from_checkpoint({"step": 12, "epoch": 1, **saved}, patience)
    assert state.stopped is stopped and state.step == 12 and state.bad_evals == saved["bad_evals"]


def test_no_early_stopping_without_patience(toy_csv: Path, tmp_path: Path) -> None:
    result = _fit(
        toy_csv, tmp_path / "run", "training.learning_rate=1e-9", "training.head_learning_rate=1e-9", epochs=3
    )
    assert result.metrics["training"]["stopped_early"] is False
    assert result.metrics["training"]["steps"] == 9
    assert len(_history(result.run_dir)) == 3


# --- class weights ------------------------------------------------------------------------------------


def test_balanced_class_weights_are_inverse_to_counts() -> None:
    labels = [0] * 6 + [1] * 3 + [2] * 1
    w = balanced_class_weights(labels, 4)
    counts = np.bincount(labels, minlength=4)
    products = w[:3].numpy() * counts[:3]
    assert np.allclose(products, products[0])  # weight x count is the same for every seen class
    assert np.allclose(w[:3].numpy(), len(labels) / (4 * counts[:3]))
    assert w[3] == 1.0  # an unseen class keeps weight 1


def test_weighted_loss_matches_definition() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([1.0, 3.0])
    per = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = (per * weights[labels]).sum() / weights[labels].sum()
    assert torch.allclose(compute_loss(logits, labels, "single_label", weights), expected)
    assert not torch.allclose(compute_loss(logits, labels, "single_label"), expected)


def test_class_weights_auto_reach_the_loop(
    tmp_path: Path, toy_frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transferkit.tasks import recipe as api  # the shared step that calls the loop

    # 60 pos : 40 neg; the loop must get weights n / (k * count) for the training split.
    frame = toy_frames["train"]
    frame = frame.drop(frame[frame["label"] == "neg"].index[40:]).reset_index(drop=True)
    path = tmp_path / "imbalanced.csv"
    frame.to_csv(path, index=False)
    seen: list = []
    original = api.train_loop

    def spy(*args, **kwargs):
        seen.append(kwargs.get("class_weights"))
        return original(*args, **kwargs)

    monkeypatch.setattr(api, "train_loop", spy)
    _fit(path, tmp_path / "auto", "training.class_weights=auto")
    _fit(path, tmp_path / "none", "training.class_weights=none")
    auto, none = seen
    assert none is None
    neg, pos = auto.tolist()  # labels in sorted order: neg, pos
    assert neg > 1 > pos
    assert neg / pos == pytest.approx(60 / 40, rel=0.1)  # inverse to the (stratified) training counts


# --- gradient accumulation ----------------------------------------------------------------------------


def test_gradient_accumulation_halves_optimizer_steps(toy_csv: Path, tmp_path: Path) -> None:
    one = _fit(toy_csv, tmp_path / "acc1", "training.batch_size=8")
    two = _fit(toy_csv, tmp_path / "acc2", "training.batch_size=8", "training.gradient_accumulation_steps=2")
    assert one.metrics["training"]["steps"] == 12  # 96 training rows / batch 8
    assert two.metrics["training"]["steps"] == 6
    a, b = _tensors(one.run_dir), _tensors(two.run_dir)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # it did train, differently
