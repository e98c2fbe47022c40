"""read_table: every supported format round-trips; every failure is a one-line DataError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from transferkit.data import read_table
from transferkit.data.readers import detect_format
from transferkit.errors import DataError

FRAME = pd.DataFrame(
    {"text": ["good film", "NA", "null", "bad, really bad"], "label": ["pos", "neg", "neg", "neg"]}
)


def _write(frame: pd.DataFrame, path: Path) -> None:
    name = path.name.lower()
    if ".csv" in name:
        frame.to_csv(path, index=False)
    elif ".tsv" in name or ".tab" in name:
        frame.to_csv(path, sep="\t", index=False)
    elif ".jsonl" in name or ".ndjson" in name:
        frame.to_json(path, orient="records", lines=True)
    elif name.endswith(".json"):
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    else:
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize(
    "name",
    [
        "d.csv",
        "d.tsv",
        "d.tab",
        "d.jsonl",
        "d.ndjson",
        "d.json",
        "d.parquet",
        "d.pq",
        "d.csv.gz",
        "d.tsv.bz2",
        "d.jsonl.gz",
        "D.CSV",
    ],
)
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _write(FRAME, path)
    got = read_table(path)
    assert got["text"].tolist() == FRAME["text"].tolist()  # "NA" and "null" survive as text
    assert got["label"].tolist() == FRAME["label"].tolist()


def test_csv_cells_are_strings_and_empty_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhello,007\n,1\n")
    got = read_table(path)
    assert got.loc[0, "label"] == "007"
    assert pd.isna(got.loc[1, "text"])


def test_jsonl_keeps_lists_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": ["x", "y"]}\n\n{"text": "b", "label": 2.5}\n')
    got = read_table(path)
    assert got.loc[0, "label"] == ["x", "y"]
    assert got.loc[1, "label"] == 2.5


def test_fmt_overrides_suffix(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    FRAME.to_csv(path, sep="\t", index=False)
    assert read_table(path, fmt="tsv")["label"].tolist() == FRAME["label"].tolist()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["d.txt", "d", "d.parquet.gz", "d.xlsx"])
def test_unknown_suffix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match="unknown table format") as err:
        read_table(path)
    assert name in str(err.value) and ".csv" in str(err.value) and ".parquet" in str(err.value)


def test_unknown_fmt(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown table format 'xml'"):
        read_table(tmp_path / "d.csv", fmt="xml")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("d.csv", ""),
        ("d.csv", "text,label\n"),
        ("d.jsonl", "\n\n"),
        ("d.json", "[]"),
        ("d.tsv", "text\tlabel\n"),
    ],
)
def test_no_rows(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{name}: no rows"):
        read_table(path)


def test_empty_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    FRAME.iloc[:0].to_parquet(path)
    with pytest.raises(DataError, match="no rows"):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.csv", 'text,label\n"a,b\n', r"d\.csv: cannot read as CSV \("),
        ("d.csv", "text,label\na,b,c,d\n", r"d\.csv: cannot read as CSV \("),
        ("d.jsonl", '{"text": "a"}\n{oops\n', r"d\.jsonl: cannot read as JSONL \(line 2: "),
        ("d.jsonl", '["a", "b"]\n', r"cannot read as JSONL \(line 1 is not a JSON object\)"),
        ("d.json", '{"text": "a"}', r"d\.json: a \.json file must hold a list of records"),
        ("d.parquet", "not parquet at all", r"d\.parquet: cannot read as Parquet \("),
    ],
)
def test_unparsable(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_table(path)
    assert "\n" not in str(err.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\n\xff\xfe caf\xe9,x\n")
    with pytest.raises(DataError, match=r"d\.csv: cannot read as CSV"):
        read_table(path)


def test_detect_format() -> None:
    assert detect_format("a/b.train.csv") == "csv"
    assert detect_format("x.NDJSON.bz2") == "jsonl"
    assert detect_format("x.pq") == "parquet"
