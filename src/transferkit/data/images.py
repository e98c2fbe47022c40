"""Image data: readers for image folders, CSV lists and ``.npz`` arrays, and decoding to RGB.

Every image enters a run as a *reference* string in the ``text`` column of a frame (so splitting,
stratification and subsampling are shared with text data, :func:`transferkit.data.load_splits`):

* a file path (absolute, or relative to the CSV that lists it);
* ``<file>.npz#<index>``: row ``index`` of the ``x`` array of an ``.npz`` file;
* ``data:image/png;base64,...``: the image itself (catalog data sets store their images this way).

:func:`open_image` turns any reference (or a PIL image / numpy array from the Python API) into an RGB
PIL image: grayscale, palette and RGBA images are converted (transparent pixels over white).
"""

from __future__ import annotations

import base64
import io
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from transferkit.data.readers import read_table
from transferkit.errors import DataError

log = logging.getLogger("transferkit.data")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DATA_URI = "data:image/png;base64,"


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``: grayscale replicated, transparency composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits
        arr = np.asarray(image, dtype=np.float64)
        top = arr.max() or 1.0
        return Image.fromarray((arr / top * 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def array_to_image(array: np.ndarray, where: str = "array") -> Image.Image:
    """An RGB image from a (H, W), (H, W, 1|3|4) or (1|3|4, H, W) array; floats in [0, 1] or 0..255.

    Raises:
        DataError: for any other shape.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise DataError(
            f"{where}: an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if arr.size and arr.max() <= 1.0:  # floats in [0, 1]
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(arr))


def png_data_uri(array: np.ndarray) -> str:
    """Encodes an image array as a ``data:image/png;base64,...`` reference (lossless)."""
    buf = io.BytesIO()
    arr = np.asarray(array)
    Image.fromarray(arr if arr.dtype == np.uint8 else arr.astype(np.uint8)).save(buf, format="PNG")
    return DATA_URI + base64.b64encode(buf.getvalue()).decode("ascii")


@lru_cache(maxsize=8)
def _npz_images(path: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["x"]


def open_image(ref) -> Image.Image:
    """Decodes one image into RGB.

    Args:
        ref: A reference string (path, ``file.npz#i`` or PNG data URI), a path, a PIL image or an array.

    Raises:
        DataError: naming the image when it cannot be read (missing, not an image, truncated, or more
            pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows: a decompression bomb).
    """
    if isinstance(ref, Image.Image):
        return to_rgb(ref)
    if isinstance(ref, np.ndarray):
        return array_to_image(ref)
    ref = str(ref)
    try:
        if ref.startswith("data:image/"):
            raw = base64.b64decode(ref.split(",", 1)[1])
            with Image.open(io.BytesIO(raw)) as img:
                img.load()
                return to_rgb(img)
        if "#" in ref and not Path(ref).exists():
            file, index = ref.rsplit("#", 1)
            return array_to_image(_npz_images(file)[int(index)], ref)
        with Image.open(ref) as img:
            img.load()  # decodes every byte: truncated files fail here, not later in training
            return to_rgb(img)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{ref}: image file not found") from None
    except Image.DecompressionBombError as err:  # not an OSError: a few KB that would decode to GBs
        raise DataError(
            f"{_short(ref)}: image too large to decode ({str(err).splitlines()[0]}); shrink it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, IndexError, KeyError) as err:
        raise DataError(f"{_short(ref)}: unreadable image ({str(err).splitlines()[0]})") from None


def _short(ref: str) -> str:
    return ref[:60] + "..." if ref.startswith("data:") else ref


def read_image_folder(folder: Path) -> pd.DataFrame:
    """One sub-folder per class: ``folder/<label>/<image>``; files with image suffixes only."""
    rows = [
        (str(path.resolve()), sub.name)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(sub.rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not rows:
        raise DataError(
            f"{folder}: no images found; an image folder holds one sub-folder per class (e.g. {folder}/cat/1.jpg)"
        )
    return pd.DataFrame(rows, columns=["text", "label"])


def read_image_csv(path: Path, path_column: str, label_column: str | None) -> pd.DataFrame:
    """A table of image paths (relative to the table's folder) and, if ``label_column``, labels."""

    frame = read_table(path)
    if path_column not in frame.columns:
        raise DataError(
            f"{path}: no column {path_column!r} (columns: {', '.join(map(str, frame.columns))}); set image.path_column"
        )
    if label_column is not None and label_column not in frame.columns:
        raise DataError(
            f"{path}: no column {label_column!r} (columns: {', '.join(map(str, frame.columns))}); set data.label_column"
        )
    base = path.resolve().parent
    refs = [str(p if Path(p).is_absolute() else base / p) for p in frame[path_column].astype(str)]
    out = pd.DataFrame({"text": refs})
    out["label"] = frame[label_column].to_numpy() if label_column else None
    return out


def read_npz(path: Path) -> pd.DataFrame:
    """Arrays ``x`` (N, H, W[, C]) and ``y`` (N,) of an ``.npz`` file, as references ``file.npz#i``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise DataError(f"{path}: an .npz data file needs arrays 'x' (images) and 'y' (labels)")
            n, y = len(data["x"]), data["y"]
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    if len(y) != n:
        raise DataError(f"{path}: 'x' has {n} images but 'y' has {len(y)} labels")
    resolved = str(path.resolve())
    return pd.DataFrame({"text": [f"{resolved}#{i}" for i in range(n)], "label": y.tolist()})


def read_images(
    path: str | Path, path_column: str = "path", label_column: str | None = "label"
) -> pd.DataFrame:
    """Reads an image folder, a CSV/TSV/JSONL/Parquet list of paths or an ``.npz`` file.

    Returns:
        Columns ``text`` (image reference) and ``label``.

    Raises:
        DataError: for a missing path, an empty folder or a missing column.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_image_folder(path)
    if path.suffix.lower() == ".npz":
        return read_npz(path)
    return read_image_csv(path, path_column, label_column)


def check_images(frame: pd.DataFrame, on_bad: str, source: str) -> pd.DataFrame:
    """Decodes every image once; unreadable ones stop the run (``fail``) or are dropped with a warning (``skip``).

    Raises:
        DataError: with ``on_bad="fail"``, naming the first bad image and how many there are.
    """
    bad: list[tuple[int, str]] = []
    for i, ref in enumerate(frame["text"]):
        try:
            open_image(ref)
        except DataError as err:
            bad.append((i, str(err)))
    if not bad:
        return frame
    if on_bad == "fail":
        raise DataError(
            f"{source}: {len(bad)} unreadable image(s), first {bad[0][1]}; fix or remove them, or set image.on_bad_image=skip"
        )
    log.warning(
        "%s: skipped %d unreadable image(s) of %d (first: %s)", source, len(bad), len(frame), bad[0][1]
    )
    return frame.drop(index=frame.index[[i for i, _ in bad]]).reset_index(drop=True)
