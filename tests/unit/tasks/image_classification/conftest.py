"""Small learnable image data for the image tests: class ``left`` is bright on the left, ``right`` on the right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_images(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) uint8 images and their labels, half ``left``, half ``right``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
    y = np.array(["left" if i % 2 == 0 else "right" for i in range(n)])
    for i in range(n):
        half = slice(0, size // 2) if y[i] == "left" else slice(size // 2, size)
        x[i, :, half] += 180
    return x, y


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.npz"
    x, y = make_images(48)
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def npz_splits(tmp_path_factory) -> dict[str, Path]:
    """Separate train / validation / test .npz files (40 / 12 / 12 images)."""
    folder = tmp_path_factory.mktemp("npz")
    out = {}
    for split, n, seed in (("train", 40, 0), ("validation", 12, 1), ("test", 12, 2)):
        x, y = make_images(n, seed=seed)
        out[split] = folder / f"{split}.npz"
        np.savez(out[split], x=x, y=y)
    return out


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """``root/<label>/<i>.png`` with grayscale, RGBA and palette images mixed."""
    root = tmp_path / "images"
    x, y = make_images(12)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img)  # mode L
        if i % 3 == 1:
            pil = pil.convert("RGBA")
        elif i % 3 == 2:
            pil = pil.convert("P")
        pil.save(root / label / f"{i}.png")
    return root


@pytest.fixture
def build_tiny():
    """``build_tiny(name, labels)``: a freshly built tiny image model (seed 42, eval mode)."""

    def build(name: str, labels=("a", "b", "c")):
        from transferkit.backbones import resolve_backbone
        from transferkit.config import load_config
        from transferkit.tasks.image_classification.model import build_image_model

        cfg = load_config(
            None, ["data.dataset=digits", "task.type=image-classification", f"backbone.name={name}"]
        )
        return build_image_model(resolve_backbone(cfg.backbone), cfg, list(labels)).eval()

    return build
