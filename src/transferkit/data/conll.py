"""Token-classification data: CoNLL and JSONL readers, and the IOB1 / IOB2 (BIO) / BIOES tagging schemes.

A sentence is a list of words with one tag per word. Readers return a DataFrame with columns ``tokens``
(list of str), ``tags`` (list of str) and ``_where`` (file and line or row of the sentence, for messages).

Schemes:

* IOB2 (BIO): every entity starts with ``B-X``; ``I-X`` continues an entity of the same type.
* IOB1: ``I-X`` starts an entity unless the previous word is in an entity of type X; ``B-X`` is used only to
  start an entity right after one of the same type (a ``B-X`` elsewhere is accepted and starts an entity).
* BIOES: ``S-X`` single-word entities; ``B-X``, ``I-X`` ..., ``E-X`` for longer ones.

:func:`convert` parses tags into entity spans under one scheme, refusing malformed sequences with the
sentence and word, and writes the spans back under another.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from transferkit.data.readers import read_table
from transferkit.errors import DataError

SCHEMES = ("iob1", "iob2", "bioes")
PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "bioes": ("B", "I", "E", "S")}
DOCSTART = "-DOCSTART-"
WHERE = "_where"


def read_conll(path: str | Path, tag_column: int | None = -1) -> pd.DataFrame:
    """Reads a CoNLL file: ``word ... tag`` per line, a blank line between sentences, ``-DOCSTART-`` skipped.

    Args:
        path: The file (UTF-8).
        tag_column: 0-based column of the tag (-1: the last); None for untagged text (one word per line,
            every tag "O"). The word is always column 0.

    Returns:
        Columns ``tokens``, ``tags`` and ``_where`` (``file line N``: the sentence's first line).

    Raises:
        DataError: for a missing file or a line without a tag column, naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: list[tuple[list[str], list[str], str]] = []
    words: list[str] = []
    tags: list[str] = []
    first = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields or fields[0] == DOCSTART:
                if words:
                    rows.append((words, tags, f"{path} line {first}"))
                words, tags = [], []
                continue
            if tag_column is None:
                need = 1
            else:
                need = max(2, tag_column + 1 if tag_column >= 0 else -tag_column + 1)
            if len(fields) < need:
                raise DataError(
                    f"{path} line {number}: expected 'word ... tag' with a tag in column {tag_column}, got {line.strip()!r}; set tokens.tag_column"
                )
            if not words:
                first = number
            words.append(fields[0])
            tags.append("O" if tag_column is None else fields[tag_column])
    if words:
        rows.append((words, tags, f"{path} line {first}"))
    if not rows:
        raise DataError(
            f"{path}: no sentences (expected 'word ... tag' lines, blank lines between sentences)"
        )
    return pd.DataFrame(rows, columns=["tokens", "tags", WHERE])


def _as_list(value, where: str, column: str) -> list[str]:
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: column {column!r} must be a list of strings, got {value!r:.80}")
    return value


def frame_to_sentences(
    frame: pd.DataFrame, source: str, tokens_column: str = "tokens", tags_column: str | None = "tags"
) -> pd.DataFrame:
    """Checks a table of sentences (one row each, list columns) and returns columns tokens, tags, _where.

    Args:
        frame: Rows with a list of words and (unless ``tags_column`` is None) a list of tags.
        source: The file (or ``<DataFrame>``) named in messages; rows are 1-based.

    Raises:
        DataError: for a missing column, a non-list cell, an empty sentence or tags of the wrong length.
    """
    for col in (tokens_column, tags_column):
        if col is not None and col not in frame.columns:
            raise DataError(
                f"{source}: no column {col!r} (columns: {', '.join(map(str, frame.columns))}); set tokens.tokens_column / tokens.tags_column"
            )
    rows = []
    for i, record in enumerate(frame.to_dict("records"), start=1):
        where = f"{source} row {i}"
        words = _as_list(record[tokens_column], where, tokens_column)
        tags = _as_list(record[tags_column], where, tags_column) if tags_column else ["O"] * len(words)
        if not words:
            raise DataError(f"{where}: empty sentence (no tokens)")
        if len(tags) != len(words):
            raise DataError(f"{where}: {len(words)} tokens but {len(tags)} tags; give one tag per token")
        rows.append((words, tags, where))
    return pd.DataFrame(rows, columns=["tokens", "tags", WHERE])


def read_jsonl_sentences(
    path: str | Path, tokens_column: str = "tokens", tags_column: str | None = "tags"
) -> pd.DataFrame:
    """Reads JSONL (or JSON / Parquet) with a list of tokens and a list of tags per row."""

    return frame_to_sentences(read_table(path), str(path), tokens_column, tags_column)


def is_table(path: str | Path, file_format: str = "auto") -> bool:
    """Whether ``path`` is read as a table (JSONL/JSON/Parquet) rather than as CoNLL."""
    if file_format != "auto":
        return file_format == "jsonl"
    return Path(path).suffix.lower() in (".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def read_sentences(
    path: str | Path,
    file_format: str = "auto",
    tag_column: int | None = -1,
    tokens_column: str = "tokens",
    tags_column: str | None = "tags",
) -> pd.DataFrame:
    """Reads a CoNLL or JSONL file of tagged sentences (see :class:`transferkit.config.TokenTaskConfig`)."""
    if is_table(path, file_format):
        return read_jsonl_sentences(path, tokens_column, tags_column)
    return read_conll(path, tag_column)


def split_tag(tag: str, where: str, position: int) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``."""
    if tag == "O":
        return "O", None
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or prefix not in ("B", "I", "E", "S"):
        raise DataError(
            f"{where} word {position + 1}: tag {tag!r} is not 'O' or PREFIX-TYPE (B-PER, I-LOC, ...)"
        )
    return prefix, kind


def to_spans(tags: list[str], scheme: str, where: str = "sentence") -> list[tuple[int, int, str]]:
    """Entity spans ``(first word, last word + 1, type)`` of a tag sequence.

    Raises:
        DataError: for a malformed sequence under ``scheme`` (an ``I-X`` that starts an entity in IOB2, an
            unfinished BIOES entity, a prefix the scheme does not use, ...), naming the sentence and word.
    """
    spans: list[tuple[int, int, str]] = []
    start, current = None, None  # open entity
    allowed = PREFIXES[scheme]

    def bad(i: int, why: str) -> DataError:
        return DataError(
            f"{where} word {i + 1}: {why} in {scheme.upper()} ({' '.join(tags[max(0, i - 2) : i + 2])}); check tokens.scheme"
        )

    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag, where, i)
        if prefix not in allowed and prefix != "O":
            raise bad(i, f"prefix {prefix}- is not used")
        if scheme == "bioes":
            if current is not None and (prefix not in ("I", "E") or kind != current):
                raise bad(i, f"{tag} inside an unfinished {current} entity")
            if current is None and prefix in ("I", "E"):
                raise bad(i, f"{tag} without a B-{kind} before it")
            if prefix == "S":
                spans.append((i, i + 1, kind))
            elif prefix == "B":
                start, current = i, kind
            elif prefix == "E":
                spans.append((start, i + 1, kind))
                start, current = None, None
            continue
        continues = prefix == "I" and current == kind
        if scheme == "iob2" and prefix == "I" and not continues:
            raise bad(i, f"{tag} does not continue a {kind} entity")
        if current is not None and not continues:
            spans.append((start, i, current))
            start, current = None, None
        if prefix in ("B", "I") and not continues:
            start, current = i, kind
    if current is not None:
        if scheme == "bioes":
            raise bad(len(tags) - 1, f"{current} entity not closed by E-{current}")
        spans.append((start, len(tags), current))
    return spans


def from_spans(spans: list[tuple[int, int, str]], length: int, scheme: str) -> list[str]:
    """Tags of ``length`` words holding ``spans`` under ``scheme``."""
    tags = ["O"] * length
    previous_end, previous_kind = None, None
    for start, end, kind in spans:
        if scheme == "bioes":
            if end - start == 1:
                tags[start] = f"S-{kind}"
            else:
                tags[start] = f"B-{kind}"
                tags[start + 1 : end - 1] = [f"I-{kind}"] * (end - start - 2)
                tags[end - 1] = f"E-{kind}"
        else:
            tags[start:end] = [f"I-{kind}"] * (end - start)
            adjacent = previous_end == start and previous_kind == kind
            if scheme == "iob2" or adjacent:
                tags[start] = f"B-{kind}"
        previous_end, previous_kind = end, kind
    return tags


def convert(tags: list[str], source: str, target: str, where: str = "sentence") -> list[str]:
    """Checks ``tags`` under scheme ``source`` and rewrites them under ``target``.

    Example:
        >>> convert(["I-PER", "I-PER", "O", "I-LOC"], "iob1", "bioes")
        ['B-PER', 'E-PER', 'O', 'S-LOC']
    """
    return from_spans(to_spans(tags, source, where), len(tags), target)


def label_set(types: set[str] | list[str], scheme: str) -> list[str]:
    """Every tag of ``scheme`` for the entity types: ``O`` first, then per sorted type its prefixes."""
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in PREFIXES[scheme]]


def entity_types(tags_lists) -> set[str]:
    """The entity types used in lists of tags."""
    return {t.split("-", 1)[1] for tags in tags_lists for t in tags if t != "O" and "-" in t}


def write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    """Writes tokens/tags rows as JSONL (test and tool helper)."""
    with path.open("w", encoding="utf-8") as fh:
        for tokens, tags in zip(frame["tokens"], frame["tags"], strict=True):
            fh.write(json.dumps({"tokens": list(tokens), "tags": list(tags)}) + "\n")
