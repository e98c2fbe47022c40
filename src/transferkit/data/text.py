"""Length-grouped batches and dynamic padding, for every task that batches token sequences.

Sequences are kept unpadded. Batches group texts of similar length (seeded, reshuffled every
epoch) and are padded only to their own longest member, so short snippets do not pay for long ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

log = logging.getLogger("transferkit.data")


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Seeded batches of similar-length examples, in a new order every epoch.

    Indices are shuffled, cut into mega-batches of ``batch_size * mega`` examples, each sorted by length and
    cut into batches; the batch order is then shuffled so that long and short batches interleave. With
    ``group_by_length=False`` it is a plain seeded shuffle; with ``weights`` the epoch is drawn with
    replacement in proportion to them (class-balanced sampling). The order depends only on ``(seed, epoch)``, so
    a resumed run can replay it.

    With ``shuffle=False`` (evaluation) examples come longest first; ``max_tokens`` then also caps each batch's
    padded size (rows x its longest example), so batches of long examples hold fewer rows and the memory of a
    forward pass stays bounded. Batches then vary in size and ``batch_size`` is None (as ``accelerate`` expects
    of dynamic batches).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        group_by_length: bool = True,
        mega: int = 50,
        weights: Sequence[float] | None = None,
        max_tokens: int | None = None,
    ):
        if max_tokens is not None and shuffle:
            raise ValueError("max_tokens caps evaluation batches only (shuffle=False)")
        self.lengths = np.asarray(lengths)
        self.max_tokens = max_tokens
        self.max_rows = batch_size
        self.weights = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
        self.batch_size = None if max_tokens is not None else batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.mega = mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:  # evaluation: sorted by length, order restored by the caller
            order = np.argsort(-self.lengths, kind="stable") if self.group_by_length else np.arange(n)
            if self.max_tokens is None:
                return [order[i : i + self.max_rows].tolist() for i in range(0, n, self.max_rows)]
            return self._token_budget_batches(order.tolist())
        rng = np.random.default_rng([self.seed, self.epoch])
        # weighted: n draws with replacement (class-balanced sampling); else a permutation
        order = (
            rng.permutation(n)
            if self.weights is None
            else rng.choice(n, size=n, replace=True, p=self.weights)
        )
        if not self.group_by_length:
            return [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        size = self.batch_size * self.mega
        batches = []
        for start in range(0, n, size):
            chunk = order[start : start + size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [
                chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)
            ]
        perm = rng.permutation(len(batches))
        return [batches[i] for i in perm]

    def _token_budget_batches(self, order: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        cur: list[int] = []
        longest = 0
        for i in order:
            length = int(self.lengths[i])
            if cur and (len(cur) == self.max_rows or (len(cur) + 1) * max(longest, length) > self.max_tokens):
                batches.append(cur)
                cur, longest = [], 0
            cur.append(i)
            longest = max(longest, length)
        if cur:
            batches.append(cur)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        if self.max_tokens is not None:
            return len(self.batches())
        return (len(self.lengths) + self.max_rows - 1) // self.max_rows


class Collator:
    """Pads token batches dynamically (to the batch's longest) and stacks labels / features."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None, label_dtype: torch.dtype = torch.long):
        self.pad = DataCollatorWithPadding(tokenizer) if tokenizer is not None else None
        self.label_dtype = label_dtype

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        labels = [it.pop("labels") for it in items] if "labels" in items[0] else None
        if "features" in items[0]:
            batch = {"features": torch.stack([it["features"] for it in items]).float()}
        elif "hidden" in items[0]:  # cached (T_i, D) token features: pad to the longest, with a mask
            longest = max(len(it["hidden"]) for it in items)
            hidden = torch.zeros(len(items), longest, items[0]["hidden"].shape[-1])
            mask = torch.zeros(len(items), longest, dtype=torch.long)
            for i, it in enumerate(items):
                hidden[i, : len(it["hidden"])] = it["hidden"]
                mask[i, : len(it["hidden"])] = 1
            batch = {"hidden": hidden, "attention_mask": mask}
        else:
            batch = dict(self.pad(items))
        if labels is not None:
            batch["labels"] = torch.tensor(np.asarray(labels), dtype=self.label_dtype)
        return batch
