"""Reading one table of examples from disk: CSV, TSV, JSONL/JSON and Parquet.

The format comes from the file's suffix (``fmt`` overrides it); ``.gz``, ``.bz2`` and ``.xz`` text files
are decompressed on the fly. CSV and TSV cells are read as strings, and only an empty cell counts as
missing, so a review that says ``NA`` or ``null`` keeps its text. A header (or JSON object) that names a
column twice is refused: pandas would rename the second ``x`` to ``x.1`` and read on. Every failure is a
one-line :class:`~transferkit.errors.DataError` that names the file.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import warnings
from pathlib import Path
from typing import IO, Any

import pandas as pd

from transferkit.errors import DataError

# suffix -> format name
SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_LABELS = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSONL", "json": "JSON", "parquet": "Parquet"}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def detect_format(path: str | Path) -> str:
    """Returns the format name ("csv", "tsv", "jsonl", "json", "parquet") of ``path`` from its suffix.

    Raises:
        DataError: for a suffix that is not a supported table format.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    fmt = SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and Path(path).suffix.lower() in _COMPRESSED):
        supported = ", ".join(SUFFIXES)
        raise DataError(
            f"{path}: unknown table format; supported: {supported} "
            "(CSV, TSV and JSONL may end in .gz or .bz2)"
        )
    return fmt


def _open_text(path: Path) -> IO[str]:
    opener = _COMPRESSED.get(path.suffix.lower())
    if opener is None:
        return path.open(encoding="utf-8-sig")
    return opener(path, "rt", encoding="utf-8-sig")


def _duplicates(names) -> list[str]:
    seen: set[str] = set()
    return sorted({n for n in names if n in seen or seen.add(n)})


def _check_header(path: Path, sep: str) -> None:
    """DataError when the header names a column twice (read as written, before pandas renames it)."""
    with _open_text(path) as fh:
        header = next(csv.reader(fh, delimiter=sep), [])
    twice = _duplicates(header)
    if twice:
        raise DataError(
            f"{path}: the header names the column(s) {', '.join(map(repr, twice))} more than once; "
            "give every column its own name"
        )


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of the JSON readers: a key given twice in one object is an error, not the last."""
    twice = _duplicates(k for k, _ in pairs)
    if twice:
        raise _DuplicateKey(f"the key(s) {', '.join(map(repr, twice))} appear more than once in one object")
    return dict(pairs)


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    _check_header(path, sep)
    # dtype=str: labels "007" and texts "NA" stay as written; only empty cells become missing.
    # index_col=False plus ParserWarning as error: a row with extra fields (an unquoted comma) fails
    # instead of silently shifting its cells into an index.
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(
                path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], index_col=False
            )
        except pd.errors.ParserWarning:
            kind, mark = ("CSV", "commas") if sep == "," else ("TSV", "tabs")
            raise DataError(
                f"{path}: cannot read as {kind} (a row has more fields than the header; quote texts with {mark})"
            ) from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    with _open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: cannot read as JSONL (line {number}: {err.msg})") from None
            except _DuplicateKey as err:
                raise DataError(f"{path}: line {number}: {err}; give every column its own name") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: cannot read as JSONL (line {number} is not a JSON object)")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _read_json(path: Path) -> pd.DataFrame:
    with _open_text(path) as fh:
        try:
            records = json.load(fh, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: cannot read as JSON (line {err.lineno}: {err.msg})") from None
        except _DuplicateKey as err:
            raise DataError(f"{path}: {err}; give every column its own name") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(
            f"{path}: a .json file must hold a list of records ([{{...}}, ...]); use JSONL otherwise"
        )
    return pd.DataFrame.from_records(records)


def read_table(path: str | Path, *, fmt: str | None = None) -> pd.DataFrame:
    """Reads a table of examples.

    Args:
        path: A ``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``, ``.json`` (list of records) or
            ``.parquet``/``.pq`` file; CSV, TSV and JSON(L) may be compressed (``.gz``, ``.bz2``, ``.xz``).
        fmt: Format name overriding the suffix: one of "csv", "tsv", "jsonl", "json", "parquet".

    Returns:
        The table as read. CSV/TSV cells are strings (missing only where a cell is empty); JSON and
        Parquet keep their own types (numbers, lists).

    Raises:
        DataError: if the file is missing, of unknown format, empty or unparsable.

    Example:
        >>> df = read_table("data/train.csv")  # doctest: +SKIP
        >>> list(df.columns)  # doctest: +SKIP
        ['text', 'label']
    """
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise DataError(f"{path}: unknown table format {fmt!r}; supported: {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: no rows")
    try:
        if fmt in ("csv", "tsv"):
            frame = _read_delimited(path, "," if fmt == "csv" else "\t")
        elif fmt == "jsonl":
            frame = _read_jsonl(path)
        elif fmt == "json":
            frame = _read_json(path)
        else:
            frame = pd.read_parquet(path)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: no rows") from None
    except Exception as err:  # pandas, pyarrow, codecs and compression raise many different types
        raise DataError(f"{path}: cannot read as {_LABELS[fmt]} ({_first_line(err)})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: no rows")
    return frame
