"""Shared-prefix KV cache: the same greedy tokens as the plain path, the prefix run once per call, a batch's
longer prefix run once per batch, fallbacks, and the clock's token counts; bf16 streaming."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig

from transferkit.backbones import resolve_backbone
from transferkit.config import BackboneConfig
from transferkit.tasks.generation.generate import GenerationClock, generate_ids, stream_text
from transferkit.tasks.generation.model import load_tokenizer
from transferkit.tasks.generation.prefix import (
    MIN_PREFIX_TOKENS,
    SharedPrefixes,
    common_prefix_length,
    layout,
)

PAD = 3
SUFFIXES = (1, 5, 3, 9, 2, 7, 4)  # different lengths: padding between prefix and suffix in every batch


@pytest.fixture(scope="module")
def spec():
    return resolve_backbone(BackboneConfig(name="tiny-llama"))


@pytest.fixture(scope="module")
def lm(spec):
    """The tiny random Llama (fp32) with larger weights than its default init: at std 0.02 it only repeats
    the last prompt token, at 0.2 greedy completions vary from token to token (a stricter comparison)."""
    config = copy.deepcopy(spec.config)
    config.initializer_range = 0.2
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def _tokens(n: int, seed: int) -> list[int]:
    return torch.randint(4, 512, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _prompts(prefix_len: int = 24) -> list[list[int]]:
    prefix = _tokens(prefix_len, 0)
    return [prefix + _tokens(n, 1 + i) for i, n in enumerate(SUFFIXES)]


def _both(lm, prompts, batch_size, max_new_tokens=8, eos_id=None):
    """Completions and clocks with the prefix cache and without."""
    runs = {}
    for on in (True, False):
        clock = GenerationClock()
        ids, _ = generate_ids(
            lm, prompts, PAD, eos_id, max_new_tokens, batch_size, clock=clock, prefix_cache=on
        )
        runs[on] = ids, clock
    return runs[True], runs[False]


def _embedded_shapes(lm) -> tuple[list[tuple[int, ...]], object]:
    """Shapes of every ``input_ids`` the decoder embeds (what was really run), and the hook's handle."""
    shapes: list[tuple[int, ...]] = []
    handle = lm.model.embed_tokens.register_forward_pre_hook(
        lambda m, args: shapes.append(tuple(args[0].shape))
    )
    return shapes, handle


def test_common_prefix_length_and_layout() -> None:
    assert common_prefix_length([]) == 0
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9, 9]]) == 3
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # each row keeps its last token
    assert common_prefix_length([[5, 2], [1, 2]]) == 0
    ids, mask = layout([[7, 7, 1], [7, 7, 1, 2, 3]], 2, PAD)
    assert ids == [[7, 7, PAD, PAD, 1], [7, 7, 1, 2, 3]]
    assert mask == [[1, 1, 0, 0, 1], [1, 1, 1, 1, 1]]
    assert layout([[1], [1, 2]], 0, PAD) == ([[PAD, 1], [1, 2]], [[0, 1], [1, 1]])  # plain left padding


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_prefix_cache_gives_the_plain_greedy_tokens(lm, batch_size: int) -> None:
    prompts = _prompts()
    (cached, clock), (plain, plain_clock) = _both(lm, prompts, batch_size)
    assert cached == plain
    assert len({tuple(row) for row in plain}) == len(prompts)  # the completions differ: a real comparison
    # the call's prefix (24 tokens) ran once; every other row read it from the cache
    assert clock.reused_prefix_tokens == 24 * (len(prompts) - 1)
    assert clock.prefill_tokens == 24 + sum(SUFFIXES)
    assert clock.prefill_tokens + clock.reused_prefix_tokens == plain_clock.prefill_tokens
    assert plain_clock.reused_prefix_tokens == 0
    assert clock.decode_tokens == plain_clock.decode_tokens
    assert clock.summary()["reused_prefix_tokens"] == clock.reused_prefix_tokens


def test_prefix_cache_with_an_eos_some_rows_reach(lm) -> None:
    # rows stop at different steps (padding after their EOS), as in the plain path
    prompts = _prompts()
    eos = generate_ids(lm, prompts, PAD, None, 8, 4, prefix_cache=False)[0][2][3]
    (cached, _), (plain, _) = _both(lm, prompts, 4, eos_id=eos)
    assert cached == plain and any(len(row) < 8 for row in plain)


def test_prefix_is_run_once_per_call(lm) -> None:
    prompts = _prompts()
    shapes, handle = _embedded_shapes(lm)
    try:
        generate_ids(lm, prompts, PAD, None, 2, batch_size=2)
    finally:
        handle.remove()
    assert shapes.count((1, 24)) == 1  # the prefix, at batch 1
    prefills = [s for s in shapes if s[1] > 1 and s != (1, 24)]  # each batch's prefill: only its suffixes
    assert len(prefills) == 4 and all(width <= max(SUFFIXES) for _, width in prefills)


def test_a_batch_runs_its_longer_prefix_once(lm) -> None:
    # all prompts share 16 tokens; the two shortest share 20 more (one batch), the two longest another 20
    shared = _tokens(16, 0)
    prompts = [shared + _tokens(20, 1) + _tokens(n, 2 + n) for n in (2, 3)]
    prompts += [shared + _tokens(20, 9) + _tokens(n, 2 + n) for n in (6, 7)]
    shapes, handle = _embedded_shapes(lm)
    try:
        (cached, clock), (plain, _) = _both(lm, prompts, batch_size=2)
    finally:
        handle.remove()
    assert cached == plain
    assert (
        shapes.count((1, 16)) == 1 and shapes.count((1, 20)) == 2
    )  # the call's prefix, each batch's extension
    assert clock.prefill_tokens == 16 + 2 * 20 + (2 + 3 + 6 + 7)
    assert clock.reused_prefix_tokens == 4 * 36 - (16 + 2 * 20)


def test_prompts_without_a_shared_prefix_run_plainly(lm) -> None:
    prompts = [_tokens(n, 10 + n) for n in (4, 30, 12, 25)]
    assert common_prefix_length(prompts) == 0
    assert SharedPrefixes(lm, prompts).for_batch(prompts) == (0, None, 0)
    (cached, clock), (plain, _) = _both(lm, prompts, batch_size=2)
    assert cached == plain
    assert clock.reused_prefix_tokens == 0 and clock.prefill_tokens == sum(len(p) for p in prompts)


def test_short_shared_prefix_and_a_single_prompt_are_not_cached(lm) -> None:
    short = _prompts(MIN_PREFIX_TOKENS - 1)
    assert SharedPrefixes(lm, short).for_batch(short) == (0, None, 0)
    one = _prompts()[:1]
    assert SharedPrefixes(lm, one).for_batch(one) == (0, None, 0)
    (cached, clock), (plain, _) = _both(lm, short, batch_size=4)
    assert cached == plain and clock.reused_prefix_tokens == 0


def test_sliding_window_models_fall_back() -> None:
    config = MistralConfig(
        vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, sliding_window=8, pad_token_id=PAD,
    )  # fmt: skip
    torch.manual_seed(0)
    mistral = AutoModelForCausalLM.from_config(config).eval()
    prompts = _prompts()
    assert not SharedPrefixes(mistral, prompts).usable
    (cached, clock), (plain, _) = _both(mistral, prompts, batch_size=4, max_new_tokens=3)
    assert cached == plain and clock.reused_prefix_tokens == 0


@pytest.mark.parametrize(("precision", "expected"), [("bf16", True), ("fp32", False), (None, False)])
def test_stream_runs_under_autocast_in_its_thread(lm, spec, precision, expected: bool) -> None:
    seen: list[tuple[bool, torch.dtype]] = []

    def record(module, args):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    handle = lm.model.register_forward_pre_hook(record)
    try:
        text = "".join(stream_text(lm, load_tokenizer(spec.tokenizer), _prompts()[0], 3, 0.0, 1.0, precision))
    finally:
        handle.remove()
    assert isinstance(text, str) and seen
    assert all(enabled == expected for enabled, _ in seen)
    if expected:
        assert all(dtype == torch.bfloat16 for _, dtype in seen)
    assert not torch.is_autocast_enabled("cpu")  # the caller's thread was never under autocast
