"""CoNLL / JSONL readers and the IOB1 / IOB2 / BIOES schemes: parsing, conversion and malformed input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from transferkit.data.conll import (
    convert,
    from_spans,
    label_set,
    read_conll,
    read_jsonl_sentences,
    read_sentences,
    to_spans,
)
from transferkit.errors import DataError

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP B-LOC
"""


def test_read_conll_skips_docstart_and_splits_on_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.conll"
    path.write_text(CONLL)
    frame = read_conll(path)
    assert frame["tokens"].tolist() == [["EU", "rejects", "German"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert frame["tags"].tolist() == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert frame["_where"].tolist() == [f"{path} line 3", f"{path} line 7", f"{path} line 10"]


def test_tag_column_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "a.conll"
    path.write_text(CONLL)
    chunks = read_conll(path, tag_column=2)  # the chunk column instead of the entity tags
    assert chunks["tags"].tolist()[0] == ["B-NP", "B-VP", "B-NP"]
    assert read_sentences(path, tag_column=3)["tags"].tolist() == read_conll(path)["tags"].tolist()


def test_conll_line_without_tag_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: expected 'word ... tag'"):
        read_conll(path)


def test_jsonl_reader_and_length_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    rows = [{"words": ["Paris", "rocks"], "ner": ["B-LOC", "O"]}, {"words": ["Hi"], "ner": ["O", "O"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"a.jsonl row 2: 1 tokens but 2 tags"):
        read_jsonl_sentences(path, "words", "ner")
    path.write_text(json.dumps(rows[0]))
    frame = read_sentences(path, tokens_column="words", tags_column="ner")
    assert frame["tokens"].tolist() == [["Paris", "rocks"]]


@pytest.mark.parametrize(
    ("tags", "source", "target", "expected"),
    [
        (["I-PER", "I-PER", "O", "I-LOC"], "iob1", "iob2", ["B-PER", "I-PER", "O", "B-LOC"]),
        (["I-PER", "B-PER", "O", "I-LOC"], "iob1", "iob2", ["B-PER", "B-PER", "O", "B-LOC"]),
        (["B-PER", "B-PER", "I-PER", "O"], "iob2", "iob1", ["I-PER", "B-PER", "I-PER", "O"]),
        (["B-PER", "I-PER", "I-PER", "B-LOC"], "iob2", "bioes", ["B-PER", "I-PER", "E-PER", "S-LOC"]),
        (["S-PER", "B-ORG", "E-ORG", "O"], "bioes", "iob2", ["B-PER", "B-ORG", "I-ORG", "O"]),
    ],
)
def test_conversion(tags, source, target, expected) -> None:
    assert convert(tags, source, target) == expected


@pytest.mark.parametrize(
    ("tags", "scheme", "message"),
    [
        (["O", "I-PER"], "iob2", "word 2: I-PER does not continue a PER entity"),
        (["B-PER", "I-LOC"], "iob2", "word 2: I-LOC does not continue a LOC entity"),
        (["B-PER", "O"], "bioes", "word 2: O inside an unfinished PER entity"),
        (["B-PER", "I-PER"], "bioes", "PER entity not closed by E-PER"),
        (["E-PER"], "bioes", "word 1: E-PER without a B-PER"),
        (["S-PER"], "iob2", "prefix S- is not used"),
        (["PER"], "iob2", "tag 'PER' is not 'O' or PREFIX-TYPE"),
    ],
)
def test_malformed_sequences_are_refused_with_where(tags, scheme, message) -> None:
    with pytest.raises(DataError, match=message) as err:
        to_spans(tags, scheme, where="train.conll line 7")
    assert str(err.value).startswith("train.conll line 7")
    assert "\n" not in str(err.value)


def test_spans_round_trip_in_every_scheme() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n, spans, i = rng.randint(1, 12), [], 0
        while i < n:
            if rng.random() < 0.4:
                end = min(n, i + rng.randint(1, 3))
                spans.append((i, end, rng.choice(["PER", "LOC"])))
                i = end
            else:
                i += 1
        for scheme in ("iob1", "iob2", "bioes"):
            assert to_spans(from_spans(spans, n, scheme), scheme) == spans


def test_label_set_covers_every_prefix() -> None:
    assert label_set({"PER", "LOC"}, "iob2") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert label_set({"PER"}, "bioes") == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
