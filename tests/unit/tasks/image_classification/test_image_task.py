"""The image classification task end to end on tiny random backbones: every strategy, caching, the run
folder, fit -> load -> predict, and the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transferkit
from transferkit.cli.main import main
from transferkit.errors import TransferkitError

STRATEGIES = ["full", "head", "linear-probe", "top-k", "gradual", "discriminative", "lp-ft", "lora", "adalora", "ia3"]  # fmt: skip
QUICK = ["task.type=image-classification", "training.progress=false", "output.tensorboard=false"]


def fit(npz: dict[str, Path], out: Path, backbone: str, strategy: str, *extra: str):
    return transferkit.fit(
        train=str(npz["train"]),
        validation=str(npz["validation"]),
        test=str(npz["test"]),
        backbone=backbone,
        strategy=strategy,
        output=str(out),
        overrides=[*QUICK, "training.max_steps=2", "training.batch_size=8", *extra],
    )


def _stem(model) -> torch.Tensor:
    from transferkit.backbones.contract import layer_groups

    return next(layer_groups(model.backbone)[0][1][0].parameters()).detach().clone()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_a_tiny_efficientnet(
    strategy: str, npz_splits, tmp_path: Path, build_tiny
) -> None:
    extra = ["strategy.total_steps=10"] if strategy == "adalora" else []
    run = fit(npz_splits, tmp_path / "run", "tiny-efficientnet", strategy, "evaluation.pretrained_baseline=false", *extra)  # fmt: skip
    m = run.metrics
    assert m["task"] == "image-classification" and m["strategy"] == strategy
    assert 0 <= m["test"]["accuracy"] <= 1 and m["test"]["num_examples"] == 12
    assert m["training"]["steps"] == (0 if strategy == "linear-probe" else 2)
    assert 0 < m["trainable_parameters"] <= m["total_parameters"]
    saved = transferkit.load(run.run_dir).model
    initial = build_tiny("tiny-efficientnet", ["left", "right"])  # same seed: the weights before training
    # lp-ft's start (the probe) is a candidate for the best evaluation: when it stays the best, it is restored
    kept_start = strategy == "lp-ft" and m["best_validation_metric"]["step"] == 0
    frozen_stem = strategy not in ("full", "discriminative", "lp-ft") or kept_start
    assert torch.equal(_stem(saved), _stem(initial)) == frozen_stem


@pytest.mark.parametrize(("backbone", "strategy"), [("tiny-resnet", "lora"), ("tiny-vit", "ia3"), ("tiny-convnext", "top-k"), ("tiny-vit", "gradual")])  # fmt: skip
def test_strategies_on_hugging_face_families(
    backbone: str, strategy: str, npz_splits, tmp_path: Path
) -> None:
    run = fit(npz_splits, tmp_path / "run", backbone, strategy, "evaluation.pretrained_baseline=false")
    assert run.metrics["training"]["steps"] == 2
    assert (run.run_dir / "transformers" / "config.json").is_file()  # the stock copy (linear head)


def test_partial_cache_gives_the_same_model_as_rerunning_the_bottom(npz_splits, tmp_path: Path) -> None:
    args = ("tiny-vit", "top-k", "evaluation.pretrained_baseline=false", "strategy.k=1")
    cached = fit(npz_splits, tmp_path / "cached", *args)
    rerun = fit(npz_splits, tmp_path / "rerun", *args, "strategy.cache=off")
    a = transferkit.load(cached.run_dir).model.state_dict()
    b = transferkit.load(rerun.run_dir).model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_augmentation_turns_feature_caching_off(npz_splits, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="transferkit"):
        run = fit(
            npz_splits, tmp_path / "aug", "tiny-resnet", "head", "image.flip=true", "image.color_jitter=0.2"
        )
    assert "augmentation is on: feature caching is off" in caplog.text
    assert run.metrics["training"]["steps"] == 2
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="transferkit"):
        fit(npz_splits, tmp_path / "plain", "tiny-resnet", "head")
    assert "feature caching is off" not in caplog.text


def test_resume_with_augmentation_ends_as_an_uninterrupted_run(
    npz_splits, tmp_path: Path, interrupted_copy
) -> None:
    from safetensors.torch import load_file

    aug = ("image.flip=true", "image.random_resized_crop=true", "image.color_jitter=0.3")
    steps = ("training.max_steps=6", "training.checkpoint_every_steps=2", "training.keep_checkpoints=5")
    full = fit(npz_splits, tmp_path / "a", "tiny-resnet", "full", *aug, *steps)
    # killed right after the step-2 checkpoint (mid-epoch: 5 batches per epoch)
    cut = interrupted_copy(full.run_dir, tmp_path / "b", step=2)
    resumed = transferkit.fit(resume=cut)
    assert resumed.metrics["training"]["resumed_from_step"] == 2
    a = load_file(full.run_dir / "model" / "model.safetensors")
    b = load_file(cut / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def tiny_image_run(npz_splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vit"
    return fit(npz_splits, out, "tiny-vit", "full", "training.learning_rate=1e-3")


def test_run_folder_records_the_task(tiny_image_run) -> None:
    run_dir = tiny_image_run.run_dir
    info = json.loads((run_dir / "labels.json").read_text())
    assert info["task"] == "image-classification" and info["labels"] == ["left", "right"]
    assert info["preprocess"]["kind"] == "resize" and info["preprocess"]["size"] == [32, 32]
    for name in ("config.yaml", "metrics.json", "confusion_matrix.json", "README.md", "model/config.json"):
        assert (run_dir / name).is_file(), name
    assert "pipeline_tag: image-classification" in (run_dir / "README.md").read_text()
    assert "pretrained_baseline" in tiny_image_run.metrics


def test_fit_load_predict_gives_the_run_metrics(tiny_image_run, npz_splits) -> None:
    model = transferkit.load(tiny_image_run.run_dir)
    assert model.task == "image-classification" and model.labels == ["left", "right"]
    again = model.evaluate(npz_splits["test"])
    assert again["accuracy"] == tiny_image_run.metrics["test"]["accuracy"]
    assert again["f1_macro"] == pytest.approx(tiny_image_run.metrics["test"]["f1_macro"])


def test_predict_paths_pil_and_arrays_agree_in_input_order(
    tiny_image_run, npz_splits, tmp_path: Path
) -> None:
    model = transferkit.load(tiny_image_run.run_dir)
    x = np.load(npz_splits["test"])["x"][:3]
    paths = []
    for i, img in enumerate(x):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    by_array = model.predict(x)  # (N, H, W): three images
    by_path = model.predict([str(p) for p in paths])
    by_pil = model.predict([Image.fromarray(img).convert("RGBA") for img in x])
    assert len(by_array) == 3
    for a, b, c in zip(by_array, by_path, by_pil, strict=True):
        assert a["label"] == b["label"] == c["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6) == pytest.approx(c["score"], abs=1e-6)
        assert set(a["scores"]) == {"left", "right"} and sum(a["scores"].values()) == pytest.approx(1)
    assert model.predict(x[1])[0]["score"] == pytest.approx(
        by_array[1]["score"], abs=1e-6
    )  # one (H, W) image


def test_cli_fit_quick_path_predict_and_evaluate(npz_splits, image_folder: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # fmt: skip
    monkeypatch.setenv("COLUMNS", "250")  # rich folds table cells to the terminal width
    run_dir = tmp_path / "cli-run"
    argv = [
        "fit",
        "--train",
        str(image_folder),
        "--task",
        "image-classification",
        "--backbone",
        "tiny-resnet",
    ]
    assert (
        main([*argv, "--strategy", "head", "--output", str(run_dir), *QUICK[1:], "training.max_steps=2"]) == 0
    )
    capsys.readouterr()
    image = image_folder / "left" / "0.png"
    assert main(["-q", "predict", str(run_dir), "--image", str(image), "--image", str(image)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[0]["image"] == str(image) and lines[0]["label"] in ("left", "right")
    listing = tmp_path / "list.csv"
    listing.write_text(f"path\n{image.relative_to(tmp_path)}\n{image.relative_to(tmp_path)}\n")
    out = tmp_path / "pred.csv"
    assert main(["-q", "predict", str(run_dir), "--input", str(listing), "--output", str(out)]) == 0
    header = out.read_text().splitlines()[0]
    assert header == "path,predicted_label,score,p_left,p_right"
    assert (
        main(["-q", "predict", str(run_dir), "--input", str(listing), "--output", str(out)]) == 2
    )  # never overwrites
    capsys.readouterr()
    assert main(["-q", "evaluate", str(run_dir), "--data", str(image_folder)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["-q", "predict", str(run_dir), "--text", "a text"]) == 2
    assert "give --image" in capsys.readouterr().err


def test_unknown_labels_and_missing_images_are_one_line_errors(tiny_image_run, image_folder: Path) -> None:
    model = transferkit.load(tiny_image_run.run_dir)
    (image_folder / "up").mkdir()
    Image.new("L", (16, 16)).save(image_folder / "up" / "0.png")
    with pytest.raises(TransferkitError, match="'up' were never seen"):
        model.evaluate(image_folder)
    with pytest.raises(TransferkitError, match="image file not found"):
        model.predict(["missing.png"])


def test_hugging_face_folder_backbone_uses_its_own_image_processor(npz_splits, tmp_path: Path) -> None:
    from transformers import (
        AutoModelForImageClassification,
        ViTConfig,
        ViTImageProcessorPil,
        ViTModel,
        pipeline,
    )

    folder = tmp_path / "my-vit"
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=24, patch_size=8)  # fmt: skip
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 24, "width": 24}, image_mean=[0.2] * 3, image_std=[0.3] * 3).save_pretrained(folder)  # fmt: skip
    run = fit(npz_splits, tmp_path / "run", str(folder), "linear-probe")
    info = json.loads((run.run_dir / "labels.json").read_text())
    assert info["preprocess"] == {"kind": "hf"}
    model = transferkit.load(run.run_dir)
    assert (
        list(model.preprocess.processor.image_mean) == [0.2] * 3
    )  # the folder's processor, saved with the run
    x = np.load(npz_splits["test"])["x"][:4]
    ours = model.predict(x)
    clf = pipeline("image-classification", model=str(run.run_dir / "transformers"))
    stock = [clf(Image.fromarray(img).convert("RGB"), top_k=None) for img in x]
    for mine, theirs in zip(ours, stock, strict=True):
        best = max(theirs, key=lambda d: d["score"])
        assert best["label"] == mine["label"] and best["score"] == pytest.approx(mine["score"], abs=1e-4)
    assert (
        AutoModelForImageClassification.from_pretrained(run.run_dir / "transformers").config.num_labels == 2
    )


def test_image_data_in_a_text_run_names_the_missing_task_flag(
    image_folder: Path, npz_file: Path, capsys
) -> None:
    for source in (["--dataset", "digits"], ["--train", str(image_folder)], ["--train", str(npz_file)]):
        assert main(["fit", *source, "--backbone", "tiny-bert"]) == 2
        assert "add --task image-classification" in capsys.readouterr().err


def test_unmerged_lora_adapter_is_applied_on_load(npz_splits, tmp_path: Path) -> None:
    merged = fit(
        npz_splits, tmp_path / "merged", "tiny-resnet", "lora", "evaluation.pretrained_baseline=false"
    )
    kept = fit(npz_splits, tmp_path / "kept", "tiny-resnet", "lora", "evaluation.pretrained_baseline=false", "strategy.merge=false")  # fmt: skip
    assert not (kept.run_dir / "transformers").exists()  # RUN/model holds the pretrained trunk: no stock copy
    assert (merged.run_dir / "transformers").is_dir()
    x = np.load(npz_splits["test"])["x"]
    a, b = transferkit.load(merged.run_dir).predict_proba(x), transferkit.load(kept.run_dir).predict_proba(x)
    assert np.allclose(a, b, atol=1e-5)
    assert kept.metrics["test"] == merged.metrics["test"]


def test_restoring_the_best_evaluation_restores_batchnorm_statistics(
    npz_splits, tmp_path: Path, build_tiny
) -> None:
    """lp-ft starts at the probe (step 0); a ruinous learning rate keeps that start the best. Restoring it
    must bring back the BatchNorm running statistics too (buffers, not parameters), not keep the last step's."""
    run = fit(npz_splits, tmp_path / "run", "tiny-efficientnet", "lp-ft", "training.learning_rate=50",
              "training.max_steps=4", "evaluation.keep_better=false")  # fmt: skip
    m = run.metrics
    assert m["best_validation_metric"]["step"] == 0
    first = json.loads((run.run_dir / "logs" / "train_log.jsonl").read_text().splitlines()[0])
    assert m["validation"]["f1_macro"] == pytest.approx(first["validation"]["f1_macro"], abs=1e-9)
    saved = transferkit.load(run.run_dir).model.state_dict()
    initial = build_tiny("tiny-efficientnet", ["left", "right"]).state_dict()
    stats = [k for k in initial if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(saved[k], initial[k]) for k in stats)
