"""training.batch_norm in whole image runs: a pretrained trunk keeps its BatchNorm statistics, a trunk from
scratch ends with statistics recomputed over its training set, and both resume to the same model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import transferkit
from transferkit.training import batch_norm

QUICK = ["task.type=image-classification", "training.progress=false", "output.tensorboard=false", "evaluation.pretrained_baseline=false"]  # fmt: skip


def fit(npz: dict[str, Path], out: Path, backbone: str, *extra: str, strategy: str = "full"):
    return transferkit.fit(
        train=str(npz["train"]), validation=str(npz["validation"]), test=str(npz["test"]),
        backbone=backbone, strategy=strategy, output=str(out),
        overrides=[*QUICK, "training.max_steps=4", "training.batch_size=8", *extra],
    )  # fmt: skip


def _statistics(model) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.clone()
        for name, layer in model.named_modules()
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)
        for key, value in (("mean", layer.running_mean), ("var", layer.running_var))
    }


@pytest.mark.parametrize("backbone", ["tiny-efficientnet", "tiny-resnet"])
@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_a_pretrained_trunk_keeps_its_statistics_by_default(
    backbone: str, strategy: str, npz_splits, tmp_path: Path, build_tiny
) -> None:
    run = fit(npz_splits, tmp_path / "run", backbone, strategy=strategy)
    assert run.metrics["training"]["batch_norm"] == "frozen"
    initial = _statistics(build_tiny(backbone, ["left", "right"]))
    saved = _statistics(transferkit.load(run.run_dir).model)
    assert initial and saved.keys() == initial.keys()
    assert all(torch.equal(saved[k], initial[k]) for k in initial)
    moved = fit(npz_splits, tmp_path / "train", backbone, "training.batch_norm=train", strategy=strategy)
    assert moved.metrics["training"]["batch_norm"] == "train"
    trained = _statistics(transferkit.load(moved.run_dir).model)
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)


def test_from_scratch_the_saved_statistics_are_those_of_the_training_set(npz_splits, tmp_path: Path) -> None:
    import numpy as np
    from torch.utils.data import DataLoader

    from transferkit.tasks.image_classification.data import ImageDataset

    run = fit(npz_splits, tmp_path / "run", "tiny-efficientnet", "backbone.pretrained=false")
    assert run.metrics["training"]["batch_norm"] == "recalibrate"
    loaded = transferkit.load(run.run_dir)
    saved = _statistics(loaded.model)
    # recalibrating the saved weights on the training images (in order, batches of 8) gives them back
    images = list(np.load(npz_splits["train"])["x"])
    loader = DataLoader(
        ImageDataset(images, None, loaded.preprocess), batch_size=8, collate_fn=loaded.collator
    )
    assert batch_norm.recalibrate(loaded.model, loader, lambda m, b: m(pixel_values=b["pixel_values"])) == 40
    again = _statistics(loaded.model)
    assert all(torch.allclose(saved[k], again[k], rtol=1e-4, atol=1e-5) for k in saved)
    plain = fit(
        npz_splits,
        tmp_path / "plain",
        "tiny-efficientnet",
        "backbone.pretrained=false",
        "training.batch_norm=train",
    )
    moving = _statistics(transferkit.load(plain.run_dir).model)  # momentum 0.01: still near the initial 0 / 1
    assert not all(torch.allclose(moving[k], again[k], rtol=1e-2, atol=1e-3) for k in saved)


def test_a_resumed_run_from_scratch_ends_as_an_uninterrupted_one(
    npz_splits, tmp_path: Path, interrupted_copy
) -> None:
    steps = ("training.max_steps=6", "training.checkpoint_every_steps=2", "training.keep_checkpoints=5")
    args = ("backbone.pretrained=false", "training.evaluations_per_epoch=2", *steps)
    whole = fit(npz_splits, tmp_path / "a", "tiny-efficientnet", *args)
    cut = interrupted_copy(whole.run_dir, tmp_path / "b", step=2)
    resumed = transferkit.fit(resume=cut)
    assert resumed.metrics["training"]["resumed_from_step"] == 2
    a = load_file(whole.run_dir / "model" / "model.safetensors")
    b = load_file(cut / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
