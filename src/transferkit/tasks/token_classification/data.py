"""Sub-word alignment for token classification: windows over long sentences, and back to words.

Each sentence (a list of words) is tokenised with the fast tokenizer's ``word_ids``. A word's tag sits on
its first sub-token; its other sub-tokens get -100 (ignored by the loss) unless ``label_all_subtokens``.
A sentence longer than ``max_length`` sub-tokens is cut into overlapping windows (``stride`` sub-tokens of
overlap) instead of being truncated; at prediction time each word takes its logits from the window where its
first sub-token lies farthest from a window edge (the most context on both sides).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase

from transferkit.errors import ConfigError

log = logging.getLogger("transferkit.data")

IGNORE = -100


@dataclass
class WindowRef:
    """Where a window came from: its sentence and, per sub-token, the word index (None for specials)."""

    sentence: int
    word_ids: list[int | None]


class TokenWindows(Dataset):
    """Tokenised windows of sentences with per-sub-token labels.

    Args:
        tokenizer: A fast tokenizer (``word_ids`` is needed).
        sentences: Lists of words.
        tag_ids: Per sentence, one label id per word; None for prediction.
        max_length: Longest window in sub-tokens, special tokens included.
        stride: Sub-tokens shared by consecutive windows of one long sentence (at most half a window).
        label_all_subtokens: Put a label on every sub-token (continuations of a word get ``continuation``).
        continuation: Maps a word's label id to the id its later sub-tokens get (B-X -> I-X); identity if None.

    Attributes:
        refs: One :class:`WindowRef` per window, in order.
        lengths: Sub-tokens per window (for length-grouped batches).
        num_split: Sentences that needed more than one window.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        sentences: Sequence[Sequence[str]],
        tag_ids: Sequence[Sequence[int]] | None = None,
        max_length: int = 256,
        stride: int = 32,
        label_all_subtokens: bool = False,
        continuation: dict[int, int] | None = None,
    ):
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                "token classification needs a fast tokenizer (word_ids); this backbone has none"
            )
        room = max_length - tokenizer.num_special_tokens_to_add(pair=False)  # sub-tokens of words per window
        if room < 2:
            raise ConfigError(f"backbone.max_length ({max_length}) leaves no room for words in a window")
        if stride > room // 2:  # overlap beyond half a window only repeats work; small max_length needs less
            log.info(
                "tokens.stride %d lowered to %d (half of a %d-sub-token window)", stride, room // 2, room
            )
            stride = room // 2
        self.sentences = [list(s) for s in sentences]
        enc = tokenizer(
            self.sentences,
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
        )
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        self.encodings = {k: enc[k] for k in keys}
        mapping = enc["overflow_to_sample_mapping"]
        self.refs = [WindowRef(int(mapping[i]), enc.word_ids(i)) for i in range(len(mapping))]
        self.lengths = [len(ids) for ids in self.encodings["input_ids"]]
        self.num_split = len(self.refs) - len(set(mapping))
        # sub-tokens per word of the whole sentence: tells a word cut at a window's start from a whole one
        whole = tokenizer(self.sentences, is_split_into_words=True, add_special_tokens=False)
        sizes = [np.bincount([w for w in whole.word_ids(j) if w is not None], minlength=len(s))
                 for j, s in enumerate(self.sentences)]  # fmt: skip
        self.starts = [_word_starts(self, i, sizes[ref.sentence]) for i, ref in enumerate(self.refs)]
        self.labels = None
        if tag_ids is not None:
            self.labels = [
                _align(
                    ref.word_ids,
                    self.starts[i],
                    tag_ids[ref.sentence],
                    label_all_subtokens,
                    continuation or {},
                )
                for i, ref in enumerate(self.refs)
            ]

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def _word_starts(windows: TokenWindows, i: int, sizes: np.ndarray) -> dict[int, int]:
    """``{word: position}`` of the first sub-token of each word that starts inside window ``i``."""
    ref = windows.refs[i]
    first_of_sentence = i == 0 or windows.refs[i - 1].sentence != ref.sentence
    counts = np.bincount([w for w in ref.word_ids if w is not None], minlength=len(sizes))
    starts: dict[int, int] = {}
    for pos, w in enumerate(ref.word_ids):
        if w is None or w in starts:
            continue
        # the window's first word, cut short, began in the previous window: this is not its first sub-token
        if (
            not starts
            and not first_of_sentence
            and counts[w] < sizes[w]
            and w in windows.refs[i - 1].word_ids
        ):
            starts[w] = -1
            continue
        starts[w] = pos
    return {w: pos for w, pos in starts.items() if pos >= 0}


def _align(
    word_ids: list[int | None], starts: dict[int, int], tags: Sequence[int], all_subtokens: bool, cont: dict
) -> list[int]:
    """Per-sub-token labels: the word's tag on its first sub-token, -100 (or the continuation tag) after."""
    first = set(starts.values())
    out = []
    for pos, w in enumerate(word_ids):
        if w is None:
            out.append(IGNORE)
        elif pos in first:
            out.append(int(tags[w]))
        else:
            out.append(cont.get(int(tags[w]), int(tags[w])) if all_subtokens else IGNORE)
    return out


def word_logits(windows: TokenWindows, logits: torch.Tensor) -> list[torch.Tensor]:
    """Per sentence, ``(num_words, C)`` logits reassembled from ``(num_windows, T, C)`` window logits.

    A word seen in several overlapping windows takes the window where its first sub-token has the most
    context (the largest distance to either edge of the window).
    """
    num_labels = logits.shape[-1]
    out = [torch.zeros(len(s), num_labels) for s in windows.sentences]
    best = [np.full(len(s), -1) for s in windows.sentences]
    for i, ref in enumerate(windows.refs):
        n = windows.lengths[i]
        for w, pos in windows.starts[i].items():
            margin = min(pos, n - 1 - pos)
            if margin > best[ref.sentence][w]:
                best[ref.sentence][w] = margin
                out[ref.sentence][w] = logits[i, pos]
    for s, seen in enumerate(best):
        if (seen < 0).any():  # cannot happen: every word starts in some window
            raise RuntimeError(f"sentence {s}: words {np.flatnonzero(seen < 0).tolist()} got no prediction")
    return out


class TokenCollator:
    """Pads token windows (labels with -100), or cached ``(T_i, D)`` token features with a mask."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None):
        self.pad = DataCollatorForTokenClassification(tokenizer) if tokenizer is not None else None

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if "hidden" not in items[0]:
            return dict(self.pad(items))
        longest = max(len(it["hidden"]) for it in items)
        hidden = torch.zeros(len(items), longest, items[0]["hidden"].shape[-1])  # (B, T, D)
        mask = torch.zeros(len(items), longest, dtype=torch.long)
        labels = torch.full((len(items), longest), IGNORE, dtype=torch.long)
        for i, it in enumerate(items):
            n = len(it["hidden"])
            hidden[i, :n] = it["hidden"]
            mask[i, :n] = 1
            if "labels" in it:
                labels[i, :n] = torch.as_tensor(it["labels"][:n])
        batch = {"hidden": hidden, "attention_mask": mask}
        if "labels" in items[0]:
            batch["labels"] = labels
        return batch


class HiddenTokens(Dataset):
    """Cached per-token features of a frozen trunk (a list of ``(T_i, D)``) with per-token labels."""

    def __init__(self, hidden: list[torch.Tensor], labels: list[list[int]] | None):
        self.hidden = hidden
        self.labels = labels
        self.lengths = [len(h) for h in hidden]

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, i: int) -> dict:
        item = {"hidden": self.hidden[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item
