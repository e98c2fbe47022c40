"""Sub-word alignment and windows: first sub-token labels, long sentences cut and merged back per word."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from transferkit.backbones.hf_text import minilm_folder
from transferkit.errors import ConfigError
from transferkit.tasks.token_classification.data import IGNORE, TokenCollator, TokenWindows, word_logits


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(minilm_folder()))


def test_label_on_first_subtoken_only(tokenizer) -> None:
    words = ["Supercalifragilistic", "Paris", "unbelievably"]
    ds = TokenWindows(tokenizer, [words], [[3, 1, 0]], max_length=64)
    word_ids, labels = ds.refs[0].word_ids, ds.labels[0]
    assert len(ds) == 1 and word_ids.count(0) > 1  # the long word is several sub-tokens
    for pos, w in enumerate(word_ids):
        first = w is not None and (pos == 0 or word_ids[pos - 1] != w)
        assert labels[pos] == ([3, 1, 0][w] if first else IGNORE)


def test_label_all_subtokens_uses_the_continuation_tag(tokenizer) -> None:
    ds = TokenWindows(
        tokenizer, [["Supercalifragilistic"]], [[1]], 64, label_all_subtokens=True, continuation={1: 2}
    )
    real = [lab for lab, w in zip(ds.labels[0], ds.refs[0].word_ids, strict=True) if w is not None]
    assert real[0] == 1 and set(real[1:]) == {2}


@pytest.mark.parametrize("stride", [0, 4, 8])
def test_long_sentence_is_windowed_and_merged_back_never_truncated(tokenizer, stride) -> None:
    words = ("Supercalifragilistic word number Washington of the " * 12).split()  # ~100 sub-tokens
    short = ["Hi", "there"]
    tags = [list(range(len(words))), [0, 1]]
    ds = TokenWindows(tokenizer, [words, short], tags, max_length=20, stride=stride)
    assert ds.num_split == sum(r.sentence == 0 for r in ds.refs) - 1
    assert max(ds.lengths) <= 20 and sum(r.sentence == 0 for r in ds.refs) > 4
    # every word of the long sentence is labelled exactly once per window it starts in, and in some window
    labelled = {
        lab for i, ref in enumerate(ds.refs) if ref.sentence == 0 for lab in ds.labels[i] if lab != IGNORE
    }
    assert labelled == set(range(len(words)))
    # window logits that encode the word index come back as one row per word, in order
    logits = torch.zeros(len(ds), max(ds.lengths), len(words))
    for i, ref in enumerate(ds.refs):
        for pos, w in enumerate(ref.word_ids):
            if w is not None:
                logits[i, pos, w] = 1.0
    merged = word_logits(ds, logits)
    assert merged[0].argmax(-1).tolist() == list(range(len(words)))
    assert merged[1].argmax(-1).tolist() == [0, 1]


def test_stride_is_capped_at_half_a_window_and_max_length_must_leave_room(tokenizer) -> None:
    words = [f"w{i}" for i in range(40)]
    capped = TokenWindows(tokenizer, [words], None, max_length=10, stride=32)
    assert len(capped) > 1 and word_logits(capped, torch.zeros(len(capped), 10, 2))[0].shape == (40, 2)
    with pytest.raises(ConfigError, match="backbone.max_length"):
        TokenWindows(tokenizer, [["a"]], None, max_length=3)


def test_collator_pads_labels_with_ignore(tokenizer) -> None:
    ds = TokenWindows(tokenizer, [["a", "b", "c"], ["d"]], [[1, 0, 1], [1]], 16)
    batch = TokenCollator(tokenizer)([ds[0], ds[1]])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == IGNORE).all()
    hidden = TokenCollator(None)(
        [{"hidden": torch.ones(3, 4), "labels": [1, 2, 3]}, {"hidden": torch.ones(1, 4), "labels": [0]}]
    )
    assert hidden["hidden"].shape == (2, 3, 4) and hidden["labels"][1].tolist() == [0, IGNORE, IGNORE]
