"""Feature caching for strategies that freeze the trunk.

A frozen trunk in eval mode is a pure function of its input, so its pooled features are computed once per
example and reused every epoch (and for the pretrained baseline). Small caches stay in memory; caches over
``MEMORY_LIMIT`` bytes go to a memory-mapped ``.npy`` file in the run folder.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit.data.text import Collator
from transferkit.inference import forward_in_order

MEMORY_LIMIT = 1 << 30  # 1 GiB


def extract_features(
    model: torch.nn.Module,
    dataset: Dataset,
    collator: Collator,
    batch_size: int,
    location: str = "auto",
    cache_path: Path | None = None,
    accelerator=None,
    progress=None,
) -> torch.Tensor | np.ndarray:
    """Pooled features of the (frozen) trunk for every example, in dataset order.

    Args:
        model: A model with ``features(**batch) -> (B, D)``.
        dataset: Tokenised examples.
        collator: Pads token batches.
        batch_size: Examples per forward pass.
        location: "memory", "disk" or "auto" (disk when over 1 GiB).
        cache_path: ``.npy`` file for the disk cache.
        accelerator: Shards the work across processes when given.
        progress: Called with the number of examples done after each batch.

    Returns:
        (N, D) float32 features: a tensor in memory or a read-only memory map on disk.
    """
    was_training = model.training
    model.eval()
    try:
        feats = forward_in_order(
            lambda b: model.features(**b), dataset, collator, batch_size, accelerator, progress=progress
        )
    finally:
        model.train(was_training)
    size = feats.numel() * 4
    if location == "disk" or (location == "auto" and size > MEMORY_LIMIT):
        if cache_path is None:
            raise ValueError("a disk feature cache needs cache_path")
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".partial.npy")
        np.save(tmp, feats.numpy())
        tmp.replace(cache_path)
        return np.load(cache_path, mmap_mode="r")
    return feats


@torch.inference_mode()
def extract_hidden(
    model: torch.nn.Module, dataset: Dataset, collator: Collator, batch_size: int, group: int
) -> list[torch.Tensor]:
    """Per-example (T_i, D) features after layer group ``group`` of the frozen bottom, in dataset order.

    Stored unpadded, so each batch later pads only to its own longest member.
    """
    from transferkit.backbones.contract import hidden_after
    from transferkit.inference import ordered_loader

    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(dataset)
    try:
        for batch in ordered_loader(dataset, collator, batch_size):
            idx = batch.pop("idx")
            hidden = hidden_after(model.backbone, batch, group)  # (B, T, D)
            lengths = batch["attention_mask"].sum(dim=1)
            for row, i in enumerate(idx.tolist()):
                out[i] = hidden[row, : int(lengths[row])].clone()
    finally:
        model.train(was_training)
    return out


def frozen_features(model, datasets: dict, collator, cfg, plan, run_dir: Path, accelerator=None) -> dict:
    """Pooled frozen-trunk features of every split (``RUN/cache/<split>.npy`` when cached on disk).

    Adapters start as the identity, so the plan's ``pretrained_view`` (adapters off) gives the same features
    without their extra compute.
    """
    with plan.pretrained_view() if plan.pretrained_view else contextlib.nullcontext():
        return {
            name: extract_features(
                model,
                ds,
                collator,
                cfg.training.eval_batch_size,
                plan.cache_location,
                Path(run_dir) / "cache" / f"{name}.npy",
                accelerator,
            )  # fmt: skip
            for name, ds in datasets.items()
        }
