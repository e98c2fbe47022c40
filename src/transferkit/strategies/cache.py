"""Feature caching for strategies that freeze the trunk.

A frozen trunk in eval mode is a pure function of its input, so its pooled features are computed once per
example and reused every epoch (and for the pretrained baseline). Small caches stay in memory; caches over
``MEMORY_LIMIT`` bytes go to a memory-mapped ``.npy`` file in the run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferkit import hardware
from transferkit.backbones.contract import hidden_after
from transferkit.data.text import Collator
from transferkit.inference import forward_in_order, ordered_loader
from transferkit.utils.io import atomic_write_text

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
    precision=None,
    max_tokens: int | None = None,
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
        precision: Autocast precision; None: the accelerator's (see :func:`~transferkit.inference.forward_in_order`).
        max_tokens: Cap on a batch's rows x longest example (``training.eval_max_tokens``).

    Returns:
        (N, D) float32 features: a tensor in memory or a read-only memory map on disk.
    """
    precision = precision if precision is not None else hardware.precision_of(accelerator)
    was_training = model.training
    model.eval()
    # the trunk is frozen here: under bf16 its weights are cast once (a bf16 copy, dropped after the pass)
    # instead of on every matmul; autocast still casts the inputs (image pixels) and keeps norms as it would
    work = hardware.low_precision_copy(model, precision)
    try:
        feats = forward_in_order(
            lambda b: work.features(**b), dataset, collator, batch_size, accelerator, progress=progress,
            precision=precision, max_tokens=max_tokens,
        )  # fmt: skip
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
    model: torch.nn.Module, dataset: Dataset, collator: Collator, batch_size: int, group: int, precision=None
) -> list[torch.Tensor]:
    """Per-example (T_i, D) features after layer group ``group`` of the frozen bottom, in dataset order.

    Stored unpadded, so each batch later pads only to its own longest member.
    """

    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(dataset)
    try:
        for batch in ordered_loader(dataset, collator, batch_size):
            idx = batch.pop("idx")
            with hardware.autocast(precision):
                hidden = hidden_after(model.backbone, batch, group).float()  # (B, T, D), stored in fp32
            lengths = batch["attention_mask"].sum(dim=1)
            for row, i in enumerate(idx.tolist()):
                out[i] = hidden[row, : int(lengths[row])].clone()
    finally:
        model.train(was_training)
    return out


class _Renumbered(Dataset):
    """A subset that keeps the token lengths the ordered loader sorts by."""

    def __init__(self, subset):
        self.subset = subset
        lengths = getattr(subset.dataset, "lengths", None)
        if lengths is not None:
            self.lengths = [lengths[i] for i in subset.indices]

    def __len__(self) -> int:
        return len(self.subset)

    def __getitem__(self, i: int):
        return self.subset[i]


class FeatureStore:
    """Frozen-trunk features shared by runs: ``training.feature_store`` (``transferkit compare`` sets it).

    A frozen, pretrained trunk maps one input to one feature vector whatever the run, so runs on the same
    backbone settings (the fingerprint: backbone section, task, image size, precision) read the vectors of inputs seen
    before and compute only the new ones. Layout: ``STORE/<fingerprint>/<n>.npy`` + ``<n>.keys.json``
    chunks, each written atomically, so an interrupted run loses at most its own chunk.
    Counters ``computed`` / ``reused`` / ``seconds`` say what a run got from it.
    """

    def __init__(self, root: Path, cfg, precision: str = "fp32"):

        parts = {"backbone": cfg.backbone.model_dump(), "task": cfg.task.type}
        if (
            precision != "fp32"
        ):  # bf16 features differ a little: their own store (fp32 keeps its old fingerprint)
            parts["precision"] = precision
        if getattr(cfg, "image", None) is not None and cfg.task.type == "image-classification":
            parts["image"] = cfg.image.image_size
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.dir = Path(root) / digest
        self.computed = self.reused = 0
        self.seconds = 0.0

    def _index(self) -> dict[str, tuple[Path, int]]:

        index: dict[str, tuple[Path, int]] = {}
        for keys_file in sorted(self.dir.glob("*.keys.json")):
            npy = keys_file.with_name(keys_file.name.replace(".keys.json", ".npy"))
            if npy.is_file():
                for row, key in enumerate(json.loads(keys_file.read_text())):
                    index[key] = (npy, row)
        return index

    def features(self, keys: list[str], compute) -> torch.Tensor:
        """(N, D) features of ``keys`` in order; ``compute(positions) -> (M, D)`` makes the missing ones."""

        hashed = [hashlib.sha256(k.encode()).hexdigest() for k in keys]
        index = self._index()
        missing = sorted({i for i, h in enumerate(hashed) if h not in index})
        first = {}
        for i in missing:  # one computation per distinct input
            first.setdefault(hashed[i], i)
        todo = sorted(first.values())
        fresh = None
        if todo:
            t0 = time.perf_counter()
            fresh = torch.as_tensor(np.asarray(compute(todo), dtype=np.float32))
            self.seconds += time.perf_counter() - t0
            self.dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}"
            tmp = self.dir / f"{name}.partial.npy"
            np.save(tmp, fresh.numpy())
            tmp.replace(self.dir / f"{name}.npy")
            atomic_write_text(self.dir / f"{name}.keys.json", json.dumps([hashed[i] for i in todo]))
        self.computed += len(todo)
        self.reused += len(keys) - len(todo)
        where = {hashed[i]: row for row, i in enumerate(todo)}
        maps: dict[Path, np.ndarray] = {}
        rows = []
        for h in hashed:
            if h in where:
                rows.append(fresh[where[h]])
            else:
                npy, row = index[h]
                if npy not in maps:
                    maps[npy] = np.load(npy, mmap_mode="r")
                rows.append(torch.from_numpy(np.array(maps[npy][row], dtype=np.float32)))
        return torch.stack(rows) if rows else torch.zeros(0)


def frozen_features(
    model, datasets: dict, collator, cfg, plan, run_dir: Path, accelerator=None, keys: dict | None = None
) -> dict:
    """Pooled frozen-trunk features of every split (``RUN/cache/<split>.npy`` when cached on disk).

    Adapters start as the identity, so the plan's ``pretrained_view`` (adapters off) gives the same features
    without their extra compute. With ``training.feature_store`` set and ``keys`` (one string per example
    and split: the text, the image path or URI), features of inputs seen by an earlier run are read back
    (see :class:`FeatureStore`) and the counts are kept in ``frozen_features.store``.
    """
    store_root = getattr(cfg.training, "feature_store", None)
    single = accelerator is None or accelerator.num_processes == 1
    with plan.pretrained_view() if plan.pretrained_view else contextlib.nullcontext():
        if store_root and keys is not None and single and cfg.backbone.pretrained:
            from torch.utils.data import Subset

            precision = hardware.precision_of(accelerator) if accelerator is not None else None
            store = FeatureStore(Path(store_root), cfg, precision.name if precision else "fp32")
            out = {}
            for name, ds in datasets.items():

                def compute(positions, ds=ds):
                    sub = _Renumbered(Subset(ds, positions))
                    return extract_features(
                        model, sub, collator, cfg.training.eval_batch_size, "memory", precision=precision,
                        max_tokens=cfg.training.eval_max_tokens,
                    )  # fmt: skip

                out[name] = store.features([str(k) for k in keys[name]], compute)
            frozen_features.store = {
                "computed": store.computed,
                "reused": store.reused,
                "seconds": store.seconds,
            }
            return out
        frozen_features.store = None
        return {
            name: extract_features(
                model,
                ds,
                collator,
                cfg.training.eval_batch_size,
                plan.cache_location,
                Path(run_dir) / "cache" / f"{name}.npy",
                accelerator,
                max_tokens=cfg.training.eval_max_tokens,
            )  # fmt: skip
            for name, ds in datasets.items()
        }


frozen_features.store = None
