"""Batched forward passes that return outputs in input order (single process or distributed)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from transferkit import hardware
from transferkit.data.text import Collator, LengthGroupedBatchSampler


class _Indexed(Dataset):
    """Adds each example's position so outputs can be put back in input order."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.lengths = getattr(dataset, "lengths", [1] * len(dataset))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        item.pop("labels", None)
        item["idx"] = i
        return item


class _IndexCollator:
    def __init__(self, collator: Collator):
        self.collator = collator

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        idx = torch.tensor([it.pop("idx") for it in items])
        batch = self.collator(items)
        batch["idx"] = idx
        return batch


def ordered_loader(
    dataset: Dataset, collator: Collator, batch_size: int, max_tokens: int | None = None
) -> DataLoader:
    """Batches sorted by length (little padding), each carrying ``idx`` for re-ordering.

    ``max_tokens`` also caps a batch's rows x longest example (see
    :class:`~transferkit.data.text.LengthGroupedBatchSampler`).
    """
    indexed = _Indexed(dataset)
    sampler = LengthGroupedBatchSampler(
        indexed.lengths, batch_size, seed=0, shuffle=False, max_tokens=max_tokens
    )
    return DataLoader(indexed, batch_sampler=sampler, collate_fn=_IndexCollator(collator))


def single_process_budget(max_tokens: int | None, accelerator) -> int | None:
    """``max_tokens`` in a single process; None when distributed (sharded evaluation keeps fixed-size batches)."""
    if accelerator is not None and accelerator.num_processes > 1:
        return None
    return max_tokens


def _autocast(accelerator, precision):
    if precision is None and accelerator is not None:
        return accelerator.autocast()
    return hardware.autocast(precision, hardware.device_type() if precision is not None else "cpu")


@torch.inference_mode()
def forward_in_order(
    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    dataset: Dataset,
    collator: Collator,
    batch_size: int,
    accelerator=None,
    loader: DataLoader | None = None,
    progress: Callable[[int], None] | None = None,
    max_tokens: int | None = None,
    precision: hardware.Precision | str | None = None,
) -> torch.Tensor:
    """Runs ``fn(batch) -> (B, ...)`` over ``dataset`` and returns ``(N, ...)`` in dataset order (as fp32).

    Per-token outputs ``(B, T_b, ...)`` whose length differs between batches are zero-padded to the longest.

    Args:
        fn: Maps a collated batch (without ``idx``) to per-example outputs.
        dataset: Examples to run.
        collator: Pads / stacks examples.
        batch_size: Examples per forward pass.
        accelerator: When given, the loader is sharded across processes and outputs gathered.
        loader: A loader already made by :func:`ordered_loader` (and prepared), to reuse.
        progress: Called with the batch size after each batch.
        max_tokens: Cap on a batch's rows x longest example (one process only: distributed runs keep
            fixed batches of ``batch_size``).
        precision: Autocast precision; None: the accelerator's mixed precision (fp32 without one).
    """
    if loader is None:
        loader = ordered_loader(dataset, collator, batch_size, single_process_budget(max_tokens, accelerator))
        if accelerator is not None:
            loader = accelerator.prepare_data_loader(loader)
    outs, ids = [], []
    for batch in loader:
        idx = batch.pop("idx")
        with _autocast(accelerator, precision):
            out = fn(batch)
        if accelerator is not None:
            if out.ndim >= 3:  # per-token outputs (B, T, C): each process's batch has its own T
                out = accelerator.pad_across_processes(out, dim=1)
            out, idx = accelerator.gather_for_metrics((out, idx))
        outs.append(out.detach().float().cpu())
        ids.append(idx.cpu())
        if progress is not None:
            progress(len(idx))
    if not outs:
        return torch.empty(0)
    if (
        len({o.shape[1:] for o in outs}) > 1
    ):  # per-token outputs (B, T_b, C): pad every batch to the longest T
        longest = max(o.shape[1] for o in outs)
        outs = [torch.nn.functional.pad(o, (0, 0) * (o.ndim - 2) + (0, longest - o.shape[1])) for o in outs]
    out = torch.cat(outs)
    order = torch.cat(ids)
    result = torch.empty_like(out)
    result[order] = out
    return result
