"""Text classification's examples: texts tokenised once (unpadded), and the cached features or per-token
hidden states a frozen trunk gives them, each with its targets."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from transferkit.artifacts import SPLITS
from transferkit.config import RunConfig
from transferkit.data import DatasetSplits
from transferkit.data.targets import encode_targets

log = logging.getLogger("transferkit.data")


def targets_and_data(cfg: RunConfig, splits: DatasetSplits, tokenizer) -> tuple[dict, dict]:
    """Per split, the encoded targets and the tokenised data set."""
    problem, labels = cfg.task.problem, splits.labels
    targets = {name: encode_targets(getattr(splits, name), problem, labels) for name in SPLITS}
    data = {
        name: TokenizedDataset(
            tokenizer, getattr(splits, name)["text"].tolist(), targets[name], cfg.backbone.max_length
        )
        for name in SPLITS
    }
    return targets, data


class TokenizedDataset(Dataset):
    """Unpadded token ids (and labels, if any) of a list of texts.

    Args:
        tokenizer: The backbone's tokenizer.
        texts: Input texts.
        labels: Per-text targets: class index (int), multi-hot vector, or float; None for prediction.
        max_length: Longest tokenised input; longer texts are truncated and counted.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        texts: Sequence[str],
        labels: Sequence | None = None,
        max_length: int = 256,
    ):
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.encodings = {k: enc[k] for k in enc if k in ("input_ids", "attention_mask", "token_type_ids")}
        self.lengths = [len(ids) for ids in self.encodings["input_ids"]]
        self.labels = None if labels is None else list(labels)
        self.num_truncated = sum(1 for n in self.lengths if n >= max_length)
        if self.num_truncated:
            log.warning(
                "%d of %d texts were longer than %d tokens and were truncated (raise backbone.max_length to keep more)",
                self.num_truncated,
                len(self.lengths),
                max_length,
            )

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


class FeatureDataset(Dataset):
    """Cached (N, D) features with their targets, for training a head on a frozen trunk."""

    def __init__(
        self,
        features: torch.Tensor | np.ndarray,
        labels: Sequence | None = None,
        lengths: Sequence[int] | None = None,
    ):
        self.features = features
        self.labels = None if labels is None else list(labels)
        # the token lengths of the texts behind the features: batches then group exactly as the uncached run's
        self.lengths = list(lengths) if lengths is not None else [1] * len(features)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        item = {"features": torch.from_numpy(np.array(self.features[i], dtype=np.float32))}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


class HiddenDataset(Dataset):
    """Cached per-token features of a frozen bottom: a list of (T_i, D) tensors with their targets."""

    def __init__(self, hidden: list[torch.Tensor], labels: Sequence | None = None):
        self.hidden = hidden
        self.labels = None if labels is None else list(labels)
        self.lengths = [len(h) for h in hidden]

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, i: int) -> dict:
        item = {"hidden": self.hidden[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item
