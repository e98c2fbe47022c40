"""Image preprocessing (per backbone), training augmentation and the image data set / collator.

Preprocessing comes from the backbone itself: a Hugging Face model's own image processor (resize, crop,
rescale, normalise, exactly as it was pretrained), or a plain resize + normalise for backbones that define
their size, mean and std (EfficientNet-Lite, tiny test models) or when ``image.image_size`` overrides the
size. No torchvision: PIL and numpy only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch.utils.data import Dataset

from transferkit.data.images import open_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocessor:
    """RGB PIL images -> (B, 3, H, W) float pixel values for one backbone.

    Args:
        size: (height, width) of a plain resize; None when ``processor`` does the work.
        mean / std: Per-channel normalisation after scaling to [0, 1].
        processor: A Hugging Face image processor (its own resize / crop / normalise).
    """

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        processor=None,
    ):
        if processor is None and size is None:
            raise ValueError("a Preprocessor needs a size or an image processor")
        self.size = tuple(size) if size is not None else None
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.processor = processor

    @classmethod
    def from_processor(cls, processor, size: int | None = None) -> Preprocessor:
        """The processor itself, or (with ``size``) a plain square resize with the processor's mean and std."""
        if size is None:
            return cls(processor=processor)
        mean = getattr(processor, "image_mean", None) or IMAGENET_MEAN
        std = getattr(processor, "image_std", None) or IMAGENET_STD
        return cls((size, size), mean, std)

    def to_dict(self) -> dict:
        """What a run folder records (``labels.json``); an HF processor is saved beside the model instead."""
        if self.processor is not None:
            return {"kind": "hf"}
        return {"kind": "resize", "size": list(self.size), "mean": self.mean.ravel().tolist(), "std": self.std.ravel().tolist()}  # fmt: skip

    def one(self, image: Image.Image) -> torch.Tensor:
        """(3, H, W) for one RGB image."""
        if self.processor is not None:
            return self.processor(images=[image], return_tensors="pt")["pixel_values"][0]
        h, w = self.size
        arr = np.asarray(image.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0  # (H, W, 3)
        return torch.from_numpy((arr.transpose(2, 0, 1) - self.mean) / self.std)  # (3, H, W)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self.one(img) for img in images])  # (B, 3, H, W)


@dataclass
class Augment:
    """Random training transforms on PIL images (before preprocessing).

    Attributes:
        flip: Horizontal flip with probability 0.5.
        random_resized_crop: Crop a random region (area ``crop_scale``..1, aspect 3/4..4/3) first.
        crop_scale: Smallest kept area fraction.
        color_jitter: Brightness, contrast and saturation factors drawn from [1 - x, 1 + x].
    """

    flip: bool = False
    random_resized_crop: bool = False
    crop_scale: float = 0.5
    color_jitter: float = 0.0

    @property
    def active(self) -> bool:
        return self.flip or self.random_resized_crop or self.color_jitter > 0

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self.random_resized_crop:
            image = self._crop(image, rng)
        if self.flip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if self.color_jitter > 0:
            x = self.color_jitter
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                image = enhance(image).enhance(float(rng.uniform(1 - x, 1 + x)))
        return image

    def _crop(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = image.size
        for _ in range(10):  # as in Inception training: retry until the crop fits
            area = w * h * rng.uniform(self.crop_scale, 1.0)
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                return image.crop((left, top, left + cw, top + ch))
        return image


class ImageDataset(Dataset):
    """Images decoded and preprocessed on access (a few thousand full-size tensors would not fit memory).

    Args:
        images: References (see :func:`transferkit.data.images.open_image`), PIL images or arrays.
        labels: Class ids, or None for prediction.
        preprocess: The backbone's preprocessing.
        augment: Training augmentation; None for evaluation.
        seed: Seed of the augmentation's random draws.

    An image's augmentation depends only on ``(seed, epoch, index)`` (the loop calls :meth:`set_epoch`), never
    on what was drawn before: a run resumed mid-epoch, or a loader with worker processes, sees exactly the
    images an uninterrupted single-process run sees.
    """

    def __init__(self, images: Sequence, labels: Sequence | None, preprocess: Preprocessor, augment: Augment | None = None, seed: int = 0):  # fmt: skip
        self.images = list(images)
        self.labels = None if labels is None else list(labels)
        self.preprocess = preprocess
        self.augment = augment if augment is not None and augment.active else None
        self.seed = seed
        self.epoch = 0
        self.lengths = [1] * len(self.images)  # every image is one "token": batches need no length grouping

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        image = open_image(self.images[i])
        if self.augment is not None:
            image = self.augment(image, np.random.default_rng([self.seed, self.epoch, i]))
        item = {"pixel_values": self.preprocess.one(image)}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


class ImageCollator:
    """Stacks pixel values, cached features or cached hidden maps, and labels, into a batch."""

    def __init__(self, label_dtype: torch.dtype = torch.long):
        self.label_dtype = label_dtype

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        labels = [it.pop("labels") for it in items] if "labels" in items[0] else None
        batch = {key: torch.stack([torch.as_tensor(it[key]) for it in items]).float() for key in items[0]}
        if labels is not None:
            batch["labels"] = torch.tensor(np.asarray(labels), dtype=self.label_dtype)
        return batch


class TensorDataset(Dataset):
    """Cached per-example tensors (features or hidden maps) under ``key``, with their targets."""

    def __init__(self, key: str, values, labels: Sequence | None = None):
        self.key, self.values = key, values
        self.labels = None if labels is None else list(labels)
        self.lengths = [1] * len(values)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> dict:
        item = {self.key: torch.as_tensor(np.asarray(self.values[i], dtype=np.float32))}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def feature_keys(images: dict[str, list]) -> dict[str, list[str]]:
    """Feature-store keys: a data URI as is, a file by path, size and modification time."""

    def key(v) -> str:
        v = str(v)
        if v.startswith("data:") or not os.path.exists(v):
            return v
        st = os.stat(v)
        return f"{os.path.abspath(v)}|{st.st_size}|{st.st_mtime_ns}"

    return {n: [key(v) for v in vals] for n, vals in images.items()}
