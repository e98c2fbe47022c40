"""Generating completions (batched, greedy or sampled, or streamed) and scoring them.

Scores: perplexity ``exp(sum NLL / completion tokens)`` over held-out completions; exact match (completion
and reference equal after stripping surrounding whitespace); ROUGE-L F1 from Google's ``rouge-score``
package (its tokenizer lower-cases and keeps ASCII letters and digits only, so it suits English text).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import torch
from torch import nn

from transferkit import hardware
from transferkit.errors import ConfigError
from transferkit.tasks.generation.prefix import SharedPrefixes, layout


def sampling_kwargs(temperature: float, top_p: float) -> dict:
    """``generate`` arguments: temperature 0 means greedy decoding."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ConfigError(f"temperature must be >= 0 and top_p in (0, 1]; got {temperature} and {top_p}")
    if temperature == 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": None}


class GenerationClock:
    """Prefill and decode time of batched generation, told apart by when the first new token's logits come.

    ``generate`` runs the prompt (prefill) and then calls its logits processors once per new token: the first
    call ends the prefill, the later ones time the decode steps. Rates count real tokens: the prompt tokens
    actually run for prefill (unpadded; a shared prefix once, see :mod:`transferkit.tasks.generation.prefix`), the new
    tokens after each row's first for decode. ``reused_prefix_tokens`` are the prompt tokens read from a
    shared prefix's cache instead: ``prefill_tokens + reused_prefix_tokens`` is every prompt's length summed.
    """

    def __init__(self) -> None:
        self.prefill_tokens = self.decode_tokens = self.reused_prefix_tokens = 0
        self.prefill_seconds = self.decode_seconds = 0.0

    def processor(self, started: float):
        # transformers, PIL, yaml ... load on first use, not when generate is imported
        from transformers import LogitsProcessor

        clock = self

        class _Tick(LogitsProcessor):
            def __init__(self) -> None:
                self.last = None

            def __call__(self, input_ids, scores):
                now = time.perf_counter()
                if self.last is None:
                    clock.prefill_seconds += now - started
                else:
                    clock.decode_seconds += now - self.last
                self.last = now
                return scores

        return _Tick()

    def summary(self) -> dict:
        """Token counts, ``prefill_tokens_per_second`` and ``decode_tokens_per_second`` (0 where nothing ran)."""

        def rate(tokens: int, seconds: float) -> float:
            return round(tokens / seconds, 2) if seconds > 0 else 0.0

        return {
            "prefill_tokens": self.prefill_tokens,
            "reused_prefix_tokens": self.reused_prefix_tokens,
            "prefill_tokens_per_second": rate(self.prefill_tokens, self.prefill_seconds),
            "decode_tokens": self.decode_tokens,
            "decode_tokens_per_second": rate(self.decode_tokens, self.decode_seconds),
        }


@torch.inference_mode()
def generate_ids(
    lm: nn.Module,
    prompts: list[list[int]],
    pad_id: int,
    eos_id: int | None,
    max_new_tokens: int,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    clock: GenerationClock | None = None,
    prefix_cache: bool = True,
) -> tuple[list[list[int]], int]:
    """New token ids for each prompt (in order, EOS and what follows removed) and how many were generated.

    Prompts are sorted by length and padded per batch so every row's new tokens start at the same column:
    on the left, or, where the rows share a prefix, between that prefix and the rest.

    Args:
        lm: A transformers causal LM.
        prompts: Token ids of each prompt.
        pad_id: The padding token.
        eos_id: The end-of-sequence token (None: generate ``max_new_tokens`` every time).
        max_new_tokens: Longest completion.
        batch_size: Prompts per ``generate`` call.
        temperature: 0 is greedy decoding; above 0 samples.
        top_p: Nucleus sampling mass (with temperature > 0).
        clock: Accumulates prefill and decode times and tokens (see :class:`GenerationClock`).
        prefix_cache: Run a prefix the prompts share once and reuse its KV cache
            (:mod:`transferkit.tasks.generation.prefix`); False runs every prompt in full.

    Returns:
        ``(completions, number of new tokens)``.
    """
    # transformers, PIL, yaml ... load on first use, not when generate is imported
    from transformers import LogitsProcessorList

    lm.eval()
    device = next(lm.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths: little padding
    shared = SharedPrefixes(lm, prompts) if prefix_cache else None
    generated = 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = [prompts[i] for i in idx]
        started = time.perf_counter()  # the prefill's time includes running a shared prefix
        prefix, cache, ran = shared.for_batch(rows) if shared is not None else (0, None, 0)
        ids, mask = (torch.tensor(x, device=device) for x in layout(rows, prefix, pad_id))  # (B, T) each
        width = ids.shape[1]
        extra = {} if cache is None else {shared.keyword: cache}
        if clock is not None:
            extra["logits_processor"] = LogitsProcessorList([clock.processor(started)])
            clock.prefill_tokens += int(mask.sum()) - prefix * len(rows) + ran
            clock.reused_prefix_tokens += prefix * len(rows) - ran
        seqs = lm.generate(
            input_ids=ids,  # (B, T); with a cache of P tokens only ids[:, P:] run
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
            **sampling_kwargs(temperature, top_p),
            **extra,
        )[:, width:]  # (B, new)
        for row, i in zip(seqs.tolist(), idx, strict=True):
            if eos_id is not None and eos_id in row:
                row = row[: row.index(eos_id)]
            while row and row[-1] == pad_id:
                row.pop()
            out[i] = row
            generated += len(row)
            if clock is not None:
                clock.decode_tokens += max(0, len(row) - 1)  # the first new token came with the prefill
    return out, generated


def stream_text(
    lm: nn.Module,
    tokenizer,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    precision: hardware.Precision | str | None = None,
) -> Iterator[str]:
    """Yields the completion's text piece by piece as it is generated (transformers' TextIteratorStreamer).

    ``generate`` runs in a thread of its own; autocast is per thread, so that thread enters
    ``hardware.autocast(precision)`` itself (None or fp32: full precision).
    """
    # transformers, PIL, yaml ... load on first use, not when generate is imported
    from transformers import TextIteratorStreamer

    lm.eval()
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    device = next(lm.parameters()).device
    ids = torch.tensor([prompt], device=device)
    kwargs = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        streamer=streamer,
        **sampling_kwargs(temperature, top_p),
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode(), hardware.autocast(precision, device.type):
                lm.generate(**kwargs)
        except BaseException as err:  # surfaced in the caller's thread below
            errors.append(err)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if errors:
        raise errors[0]


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (``rouge-score``)."""
    # sklearn, scipy, pandas ... load on first use, not when generate is imported
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    if not predictions:
        return float("nan")
    return sum(
        scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)
    ) / len(predictions)


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of completions equal to their reference after stripping surrounding whitespace."""
    if not predictions:
        return float("nan")
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)) / len(
        predictions
    )


def perplexity(stats: torch.Tensor) -> dict:
    """Perplexity and mean token loss from (N, 2) per-example ``[NLL sum, tokens]``."""
    nll, tokens = float(stats[:, 0].sum()), float(stats[:, 1].sum())
    loss = nll / tokens if tokens else float("nan")
    return {"perplexity": math.exp(min(loss, 700)), "loss": loss, "tokens": int(tokens)}


def generation_scores(
    lm,
    tokenizer,
    prompts: list[list[int]],
    references: list[str],
    max_new_tokens: int,
    batch_size: int,
    prefix_cache: bool = True,
) -> dict:
    """Greedy completions of ``prompts`` scored against ``references`` (exact match, ROUGE-L, tokens/s)."""
    t0 = time.perf_counter()
    clock = GenerationClock()
    ids, n = generate_ids(
        lm, prompts, tokenizer.pad_token_id, tokenizer.eos_token_id, max_new_tokens, batch_size,
        clock=clock, prefix_cache=prefix_cache,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    return {
        "exact_match": exact_match(texts, references),
        "rouge_l": rouge_l(texts, references),
        "generated_examples": len(texts),
        "generation_tokens_per_second": round(n / seconds, 2) if seconds else 0.0,
        **clock.summary(),
        "samples": [
            {"completion": t, "reference": r} for t, r in list(zip(texts, references, strict=True))[:5]
        ],
    }
