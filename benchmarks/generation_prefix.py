"""The ``tk_prefix`` case of ``bench_generation.py``: batched generation of chat prompts that share a long
system prompt, with transferkit's shared-prefix KV cache (``generation.prefix_cache``) on and off.

Both modes run in one process on the same pretrained model and prompts, alternating (off, on) so that load
from other jobs hits both alike; each mode keeps its fastest run. Rates count what was really run: with the
cache on, the prefix's tokens are run once per call and read from the cache for every other prompt
(``reused_prefix_tokens``); "prompt tokens/s" divides every prompt's tokens, run or reused, by the prefill
seconds, so the two modes compare on the same work.
"""

from __future__ import annotations

import time

# ~115 SmolLM2 tokens: the kind of fixed instruction a deployed assistant's chat template puts before every
# user turn (with the template's own tokens, every prompt starts with the same ~122)
SYSTEM_PROMPT = (
    "You are a careful assistant for a film and news analytics team. Read each request closely and answer "
    "only what it asks, in the format it asks for. Sentiment questions take a single lower-case word. Entity "
    "questions take a list of 'text (type)' items separated by '; ', with the types person, location, "
    "organization or misc, or the word 'none' when there are none. Never explain an answer, never repeat the "
    "question, and never add greetings, apologies or notes. If a request is unclear, still give your best "
    "short answer."
)


def measure(args, rows: list[dict], settings: list[str]) -> dict:
    """Times ``generate_ids`` over ``rows`` (``{"prompt"}``) rendered as system + user chats.

    Args:
        args: The benchmark's arguments (``--prefix-*``, ``--max-new-tokens``, ``--seed``).
        rows: Instruction-set rows; their prompts become the user turns.
        settings: Config overrides naming the backbone and the generation settings.
    """
    import torch

    from transferkit import hardware
    from transferkit.backbones import resolve_backbone
    from transferkit.config import load_config
    from transferkit.tasks.generation.data import Example, prompt_ids, render
    from transferkit.tasks.generation.generate import GenerationClock, generate_ids
    from transferkit.tasks.generation.model import build_causal_lm, load_tokenizer
    from transferkit.tasks.generation.prefix import common_prefix_length

    cfg = load_config(None, settings + ["data.train=unused.jsonl"])
    spec = resolve_backbone(cfg.backbone)
    tok = load_tokenizer(spec.tokenizer)
    lm = build_causal_lm(spec, args.seed).lm.eval()
    prompts = []
    for r in rows:  # rendered as the predictor renders a chat: system, user, then the assistant's turn
        chat = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": r["prompt"]}]
        example = Example(None, "", messages=[*chat, {"role": "assistant", "content": ""}])
        text, _, templated = render(example, tok, cfg.generation)
        prompts.append(prompt_ids(text, tok, templated))
    precision = hardware.resolve_precision(args.prefix_precision)

    def once(prefix_cache: bool) -> dict:
        clock = GenerationClock()
        t0, cpu0 = time.perf_counter(), time.process_time()
        with hardware.autocast(precision):
            ids, n = generate_ids(
                lm, prompts, tok.pad_token_id, tok.eos_token_id, args.max_new_tokens, args.prefix_batch_size,
                clock=clock, prefix_cache=prefix_cache,
            )  # fmt: skip
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        prompt_tokens = clock.prefill_tokens + clock.reused_prefix_tokens
        return clock.summary() | {
            "wall_s": wall, "cpu_s": cpu, "prefill_s": clock.prefill_seconds, "decode_s": clock.decode_seconds,
            "prompt_tokens_per_prefill_s": prompt_tokens / clock.prefill_seconds, "generated": n, "ids": ids,
        }  # fmt: skip

    with torch.inference_mode(), hardware.autocast(precision):  # warm-up: first-call costs out of the figures
        warm = torch.tensor([prompts[0]])
        lm.generate(input_ids=warm, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)
    best: dict[str, dict] = {}
    for _ in range(args.prefix_repeats):
        for mode, on in (("off", False), ("on", True)):
            r = once(on)
            if mode not in best or r["wall_s"] < best[mode]["wall_s"]:
                best[mode] = r
    same = sum(a == b for a, b in zip(best["on"].pop("ids"), best["off"].pop("ids"), strict=True))
    return {
        "prompts": len(prompts),
        "prompt_tokens": sum(len(p) for p in prompts),
        "shared_prefix_tokens": common_prefix_length(prompts),
        "batch_size": args.prefix_batch_size,
        "max_new_tokens": args.max_new_tokens,
        "precision": precision.name,
        "same_completions": same,
        "on": best["on"],
        "off": best["off"],
    }


def report(r: dict) -> list[str]:
    """One line per mode, then the ratios and the other jobs' load."""
    lines = [
        f"tk_prefix: {r['prompts']} chat prompts ({r['prompt_tokens']} tokens, all share "
        f"{r['shared_prefix_tokens']}), batch {r['batch_size']}, precision {r['precision']}, greedy"
    ]
    for mode in ("off", "on"):
        m = r[mode]
        lines.append(
            f"  prefix cache {mode:<3}: prefill {m['prefill_tokens']:>6} tokens run ({m['reused_prefix_tokens']} "
            f"reused) in {m['prefill_s']:6.2f} s = {m['prompt_tokens_per_prefill_s']:7.1f} prompt tokens/s, "
            f"decode {m['decode_tokens_per_second']:6.1f} tokens/s, wall {m['wall_s']:6.2f} s (CPU {m['cpu_s']:.1f} s)"
        )
    on, off = r["on"], r["off"]
    lines.append(
        f"  ratios on / off: prefill {off['prefill_s'] / on['prefill_s']:.2f}x faster, wall "
        f"{off['wall_s'] / on['wall_s']:.2f}x faster, decode tokens/s "
        f"{on['decode_tokens_per_second'] / off['decode_tokens_per_second']:.2f}x; same completions "
        f"{r['same_completions']} of {r['prompts']}"
    )
    during = r.get("machine_during_run", {})
    if during.get("other_cpu_cores") is not None:  # other jobs' share of the cores: how pessimistic these are
        lines.append(f"  other jobs kept {during['other_cpu_cores']:.2f} cores busy during this case")
    return lines
