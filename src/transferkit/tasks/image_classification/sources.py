"""From an image run's configured sources to validated splits, and the backbone's preprocessing.

Image sources are read into frames of references (see :mod:`transferkit.data.images`), every image is
decoded once (unreadable ones fail the run or are skipped, ``image.on_bad_image``), and the frames go
through :func:`transferkit.data.load_splits` like text: splits from files, or stratified and seeded from one.
"""

from __future__ import annotations

import pandas as pd

from transferkit.backbones import BackboneSpec
from transferkit.config import RunConfig
from transferkit.data.catalog import DATASETS
from transferkit.data.images import check_images, read_images
from transferkit.data.splits import DatasetSplits, load_splits
from transferkit.errors import ConfigError, DataError
from transferkit.tasks.image_classification.data import IMAGENET_MEAN, IMAGENET_STD, Preprocessor

SPLITS = ("train", "validation", "test")


def load_image_splits(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None = None) -> DatasetSplits:
    """The train / validation / test images (column ``text``: references) and labels of an image run.

    Args:
        cfg: The run configuration (``data`` and ``image`` sections).
        frames: DataFrames per split (Python API) with ``image.path_column`` and ``data.label_column``.

    Raises:
        ConfigError: for a catalog data set that is not an image data set.
        DataError: for a missing file or folder, a missing column or an unreadable image (``on_bad_image=fail``).
    """
    data, im = cfg.data, cfg.image
    if data.dataset and not frames:
        task = DATASETS.entry(data.dataset).extra.get("task")
        if task != "image-classification":
            raise ConfigError(
                f"data.dataset: {data.dataset!r} is a {task} data set, not images (try digits or mnist5k)"
            )
        return load_splits(data, "single_label", task="image-classification")
    parts: dict[str, pd.DataFrame] = {}
    for split in SPLITS:
        if frames and split in frames:
            raw = frames[split]
            for column in (im.path_column, data.label_column):
                if column not in raw.columns:
                    raise DataError(
                        f"frames[{split!r}]: no column {column!r}; set image.path_column / data.label_column"
                    )
            frame = pd.DataFrame(
                {"text": raw[im.path_column].astype(str), "label": raw[data.label_column].to_numpy()}
            )
            parts[split] = check_images(frame, im.on_bad_image, f"DataFrame {split!r}")
        elif getattr(data, split) and not frames:
            path = getattr(data, split)
            parts[split] = check_images(
                read_images(path, im.path_column, data.label_column), im.on_bad_image, path
            )
    if "train" not in parts:
        raise DataError(
            "no training images: set data.train (an image folder, a CSV of path,label or an .npz file)"
        )
    plain = data.model_copy(update={"dataset": None, "train": None, "validation": None, "test": None, "text_column": "text", "label_column": "label"})  # fmt: skip
    splits = load_splits(plain, "single_label", parts)
    splits.source = str(data.train) if data.train and not frames else "DataFrames"
    return splits


def preprocessor_for(spec: BackboneSpec, image_size: int | None = None) -> Preprocessor:
    """The backbone's own preprocessing: its Hugging Face image processor, or a resize to its native size.

    ``image_size`` replaces the native size with a square resize (keeping the backbone's mean and std).
    """
    config = spec.config
    if spec.tokenizer:  # a Hugging Face folder or hub id: its own image processor
        from transformers import AutoImageProcessor

        try:
            processor = AutoImageProcessor.from_pretrained(spec.tokenizer)
        except OSError as err:
            raise ConfigError(
                f"backbone {spec.name!r}: no image processor ({str(err).splitlines()[0]})"
            ) from None
        return Preprocessor.from_processor(processor, image_size)
    native = getattr(config, "image_size", None)
    size = image_size or (native if isinstance(native, int) else 32)
    if config.model_type.startswith("transferkit-efficientnet"):
        return Preprocessor((size, size), IMAGENET_MEAN, IMAGENET_STD)
    return Preprocessor((size, size), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # tiny random test models
