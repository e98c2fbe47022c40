"""Entity metrics follow seqeval: exact spans and types, strict mode for the scheme, micro and macro."""

from __future__ import annotations

import pytest
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from transferkit.evaluation.ner import entity_metrics

TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O"], ["B-LOC", "O"]]
PRED = [["B-PER", "I-PER", "O", "I-LOC"], ["O", "B-ORG", "O", "O"], ["B-LOC", "O"]]


def test_strict_iob2_drops_entities_started_by_i() -> None:
    m = entity_metrics(TRUE, PRED, "iob2", strict=True)
    # found: PER (right), ORG (wrong span), LOC in sentence 3 (right); the I-LOC start counts only when lenient
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(f1_score(TRUE, PRED, mode="strict", scheme=IOB2))
    lenient = entity_metrics(TRUE, PRED, "iob2", strict=False)
    assert lenient["recall"] == pytest.approx(3 / 4) and lenient["f1"] == pytest.approx(f1_score(TRUE, PRED))


def test_per_type_macro_and_token_report() -> None:
    m = entity_metrics(TRUE, PRED, "iob2")
    assert m["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert m["per_type"]["ORG"]["f1"] == 0.0 and m["per_type"]["LOC"]["recall"] == 0.5
    macro = sum(v["f1"] for v in m["per_type"].values()) / 3
    assert m["f1_macro"] == pytest.approx(macro)
    assert m["num_entities"] == 4 and m["num_sentences"] == 3 and m["num_tokens"] == 10
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["token_report"]["I-ORG"]["recall"] == 0.0 and m["token_report"]["O"]["support"] == 4


def test_no_entities_scores_zero_without_error() -> None:
    m = entity_metrics([["O", "O"]], [["O", "O"]])
    assert m["f1"] == 0.0 and m["accuracy"] == 1.0 and m["per_type"] == {}


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="differ"):
        entity_metrics([["O"]], [["O", "O"]])
