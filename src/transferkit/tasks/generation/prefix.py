"""Shared-prefix KV cache: prompts that start alike (a chat template's system prompt, a fixed instruction) run
their common prefix through the model once, at batch 1, and each batch starts from a copy of that cache.

A batch using a prefix of P tokens is laid out prefix + padding + suffix, so every row's new tokens still start
at the same column::

    input_ids       [p0 .. pP-1 | pad pad | s0 s1 s2]      (B, T): the prefix columns are never run again
    attention_mask  [1  ..  1   |  0   0  |  1  1  1]
    position ids    [0  .. P-1  |  0   0  |  P P+1 P+2]    (``generate``: mask cumsum - 1, padding not counted)

``generate`` sees a cache of P tokens and runs only ``input_ids[:, P:]``. Position ids are the same as those of
the unpadded prompt, and padding is masked out, so the tokens match the plain left-padded path (greedy, fp32).

Where prefixes come from, in one ``generate_ids`` call:

* the call's prefix: what all of its prompts share, run once (by the first batch) and reused by every batch,
  e.g. the system prompt of every prompt of an evaluation;
* a batch's longer prefix: where the rows of one batch share ``min_tokens`` or more tokens beyond the call's
  prefix, those run once, on top of a copy of the call's cache.

A prefix is used from ``MIN_PREFIX_TOKENS`` tokens on (see there), and never reaches a prompt's last token
(each row needs one token of its own for the first new token's logits). Only a ``DynamicCache`` of
full-attention layers is reused (no sliding windows, static or recurrent caches): other models, and a model
whose generation config asks for a cache implementation, run every batch plainly.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch
from torch import nn

# Reusing a prefix costs one more forward call (batch 1) and one copy of its cache per batch, and splits the
# rows' padding into the middle of the batch. Under 16 tokens the prefill it saves is about the price of that
# extra call on a CPU, and short shared starts are mostly chance (a BOS token and "Question:"), not a template.
MIN_PREFIX_TOKENS = 16


def common_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Leading tokens all ``prompts`` share, at most one short of the shortest prompt (0 for no prompts)."""
    if not prompts:
        return 0
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        i = 0
        while i < n and p[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def layout(
    rows: Sequence[Sequence[int]], prefix: int, pad_id: int
) -> tuple[list[list[int]], list[list[int]]]:
    """``(input_ids, attention_mask)`` rows: ``prefix`` shared tokens, then padding, then each row's rest.

    With ``prefix=0`` this is plain left padding.
    """
    width = max(len(r) for r in rows)
    ids = [[*r[:prefix], *[pad_id] * (width - len(r)), *r[prefix:]] for r in rows]
    mask = [[1] * prefix + [0] * (width - len(r)) + [1] * (len(r) - prefix) for r in rows]
    return ids, mask


def cache_keyword(lm: nn.Module) -> str:
    """The keyword ``forward`` and ``generate`` take a KV cache under: ``cache`` (transformers 5) or
    ``past_key_values`` (4.x)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _empty_cache(lm: nn.Module):
    """A fresh ``DynamicCache`` for ``lm``, or None where its layers would not be plain full attention."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # a transformers without layered caches
        return None
    try:
        cache = DynamicCache(config=lm.config)  # one layer type per decoder layer (sliding, linear, ...)
    except TypeError:
        return None
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return cache


class SharedPrefixes:
    """The prefix caches of one ``generate_ids`` call (see the module docstring).

    Args:
        lm: The causal LM (eval mode, under the caller's ``inference_mode`` and autocast).
        prompts: Every prompt of the call (token ids).
        min_tokens: Shortest prefix worth reusing.
    """

    def __init__(self, lm: nn.Module, prompts: Sequence[Sequence[int]], min_tokens: int = MIN_PREFIX_TOKENS):
        self.lm, self.min_tokens = lm, min_tokens
        self.keyword = cache_keyword(lm)
        self.usable = (
            not lm.config.is_encoder_decoder
            and getattr(lm.generation_config, "cache_implementation", None) is None
            and _empty_cache(lm) is not None
        )
        # one prompt alone gains nothing: its prefix would run once either way
        n = common_prefix_length(prompts) if len(prompts) > 1 else 0
        self.call_tokens: list[int] = list(prompts[0][:n]) if n >= min_tokens else []
        self.call_cache = None  # batch 1, len(call_tokens) tokens; made by the first batch

    def for_batch(self, rows: Sequence[Sequence[int]]) -> tuple[int, object | None, int]:
        """The prefix one batch starts from.

        Returns:
            ``(P, cache, ran)``: the prefix length, a cache of those P tokens with ``len(rows)`` rows (a copy:
            ``generate`` grows it), and how many prefix tokens were run now to make it (the call's prefix the
            first time, a batch's own extension each time). ``(0, None, 0)``: the batch runs plainly.
        """
        if not self.usable:
            return 0, None, 0
        ran = 0
        if self.call_tokens and self.call_cache is None:
            self.call_cache = self._run(None, self.call_tokens)
            ran += len(self.call_tokens)
        base, start = self.call_cache, len(self.call_tokens)
        n = common_prefix_length(rows)
        if len(rows) > 1 and n - start >= self.min_tokens:
            base = self._run(base, rows[0][start:n])
            ran += n - start
        else:
            n = start
        if base is None:
            return 0, None, ran
        cache = copy.deepcopy(base)
        cache.batch_repeat_interleave(len(rows))  # (1, heads, P, dim) -> (B, heads, P, dim) per layer
        return n, cache, ran

    def _run(self, base, tokens: Sequence[int]):
        """A cache holding ``base``'s tokens then ``tokens`` (``base`` itself is left as it was)."""
        cache = copy.deepcopy(base) if base is not None else _empty_cache(self.lm)
        device = next(self.lm.parameters()).device
        # the decoder stack only: the prefix's own logits are never read (saves the vocabulary projection);
        # positions continue from the cache's length
        decoder = self.lm.get_submodule(self.lm.base_model_prefix)
        decoder(
            input_ids=torch.tensor([list(tokens)], device=device), use_cache=True, **{self.keyword: cache}
        )
        return cache
