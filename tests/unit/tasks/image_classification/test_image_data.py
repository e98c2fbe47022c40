"""Image readers, RGB conversion, bad images, preprocessing and augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from transferkit.config import load_config
from transferkit.data.images import array_to_image, check_images, open_image, png_data_uri, read_images
from transferkit.errors import DataError
from transferkit.tasks.image_classification.data import Augment, ImageCollator, ImageDataset, Preprocessor
from transferkit.tasks.image_classification.sources import load_image_splits


def test_folder_reader_labels_by_subfolder_and_converts_every_mode_to_rgb(image_folder: Path) -> None:
    frame = read_images(image_folder)
    assert sorted(frame["label"].unique()) == ["left", "right"]
    assert len(frame) == 12
    modes = {Image.open(ref).mode for ref in frame["text"]}
    assert modes == {"L", "RGBA", "P"}
    for ref in frame["text"]:
        img = open_image(ref)
        assert img.mode == "RGB" and img.size == (16, 16)


def test_rgba_transparency_is_composited_over_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)  # black, fully transparent
    rgba[0, 0] = (255, 0, 0, 255)  # one opaque red pixel
    img = array_to_image(rgba)
    assert img.getpixel((0, 0)) == (255, 0, 0)
    assert img.getpixel((1, 1)) == (255, 255, 255)


def test_grayscale_arrays_become_three_equal_channels() -> None:
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    rgb = np.asarray(array_to_image(gray))
    assert rgb.shape == (4, 4, 3)
    assert (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()
    floats = np.asarray(array_to_image(gray / 255.0))  # floats in [0, 1] are scaled
    assert np.abs(floats[..., 0].astype(int) - gray).max() <= 1
    with pytest.raises(DataError, match="shape"):
        array_to_image(np.zeros((5, 5, 2)))


def test_csv_paths_are_relative_to_the_csv(image_folder: Path) -> None:
    csv = image_folder.parent / "list.csv"
    pd.DataFrame({"file": ["images/left/0.png", "images/right/1.png"], "y": ["l", "r"]}).to_csv(
        csv, index=False
    )
    frame = read_images(csv, path_column="file", label_column="y")
    assert list(frame["label"]) == ["l", "r"]
    assert open_image(frame["text"][1]).size == (16, 16)
    with pytest.raises(DataError, match="no column 'path'"):
        read_images(csv)


def test_npz_reader_and_data_uri_round_trip(npz_file: Path) -> None:
    frame = read_images(npz_file)
    assert len(frame) == 48 and frame["text"][3].endswith("#3")
    x = np.load(npz_file)["x"]
    assert (np.asarray(open_image(frame["text"][3]))[..., 0] == x[3]).all()
    assert (np.asarray(open_image(png_data_uri(x[5])))[..., 1] == x[5]).all()


def test_bad_images_fail_by_path_or_are_skipped_with_a_count(image_folder: Path, caplog) -> None:
    broken = image_folder / "left" / "broken.png"
    good = (image_folder / "left" / "0.png").read_bytes()
    broken.write_bytes(good[: len(good) // 2])  # truncated PNG
    (image_folder / "right" / "junk.jpg").write_bytes(b"not an image")
    frame = read_images(image_folder)
    with pytest.raises(DataError, match=r"2 unreadable image\(s\), first .*broken.png.*on_bad_image=skip"):
        check_images(frame, "fail", str(image_folder))
    with caplog.at_level(logging.WARNING, logger="transferkit.data"):
        kept = check_images(frame, "skip", str(image_folder))
    assert len(kept) == len(frame) - 2
    assert "skipped 2 unreadable image(s) of 14" in caplog.text


def test_splits_from_one_source_are_stratified_and_seeded(npz_file: Path) -> None:
    cfg = load_config(None, [f"data.train={npz_file}", "task.type=image-classification"])
    a, b = load_image_splits(cfg), load_image_splits(cfg)
    assert list(a.test["text"]) == list(b.test["text"])
    assert a.labels == ["left", "right"]
    counts = a.test["label"].value_counts()
    assert counts.min() >= len(a.test) // 2  # stratified: both classes, balanced as in train
    assert not set(a.train["text"]) & set(a.test["text"])


def test_text_catalog_data_set_is_refused_for_images() -> None:
    from transferkit.errors import ConfigError

    cfg = load_config(None, ["data.dataset=rotten_tomatoes", "task.type=image-classification"])
    with pytest.raises(ConfigError, match="not images"):
        load_image_splits(cfg)


def test_preprocessor_resizes_and_normalises() -> None:
    pre = Preprocessor((8, 6), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    white = Image.new("RGB", (20, 10), (255, 255, 255))
    out = pre([white, white])
    assert out.shape == (2, 3, 8, 6)
    assert torch.allclose(out, torch.ones_like(out))  # (1 - 0.5) / 0.5
    assert pre.to_dict() == {"kind": "resize", "size": [8, 6], "mean": [0.5] * 3, "std": [0.5] * 3}


def test_augmentation_is_random_seeded_and_off_by_default() -> None:
    x = np.zeros((16, 16), dtype=np.uint8)
    x[:, :4] = 255  # bright left edge: a flip moves it
    pre = Preprocessor((16, 16), (0, 0, 0), (1, 1, 1))
    plain = ImageDataset([x] * 8, None, pre, Augment())
    assert plain.augment is None
    flips = ImageDataset([x] * 8, None, pre, Augment(flip=True), seed=3)
    left = [float(flips[i]["pixel_values"][0, :, 0].mean()) for i in range(8)]
    assert 0 < sum(v > 0.5 for v in left) < 8  # some flipped, some not
    again = ImageDataset([x] * 8, None, pre, Augment(flip=True), seed=3)
    assert left == [float(again[i]["pixel_values"][0, :, 0].mean()) for i in range(8)]
    # draws depend on (seed, epoch, index) only: any access order, and a new epoch draws anew
    assert [float(again[i]["pixel_values"][0, :, 0].mean()) for i in reversed(range(8))] == left[::-1]
    again.set_epoch(1)
    assert [float(again[i]["pixel_values"][0, :, 0].mean()) for i in range(8)] != left
    crop = Augment(random_resized_crop=True, crop_scale=0.3, color_jitter=0.4)
    sizes = {crop(Image.fromarray(x).convert("RGB"), np.random.default_rng(i)).size for i in range(5)}
    assert len(sizes) > 1


def test_collator_stacks_pixels_and_labels() -> None:
    pre = Preprocessor((4, 4))
    ds = ImageDataset([np.zeros((4, 4), np.uint8)] * 3, [0, 1, 1], pre)
    batch = ImageCollator()([ds[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 4, 4)
    assert batch["labels"].tolist() == [0, 1, 1]
