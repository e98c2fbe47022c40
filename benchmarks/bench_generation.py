"""SmolLM2-135M-Instruct with LoRA on a small instruction set built from shipped data, beside the Hugging Face
Trainer + PEFT recipe on the same examples.

The instruction set (written as prompt/completion JSONL into a temporary folder, rendered with the model's
chat template) mixes three tasks, ``--per-task`` training examples each (validation and test: a fifth and a
quarter of that):

  sentiment  rotten_tomatoes snippets: "Is this movie review fresh or rotten?" -> fresh | rotten
  tweets     vader_tweets: "Is the sentiment of this tweet positive or negative?" -> positive | negative
  entities   conll2003 sentences: "List the named entities ..." -> "EU (organization); German (misc)" | none

Contenders (each in a fresh Python process, see ``common.run_worker``):

  tk_lora   ``transferkit.fit(task=generation, backbone=smollm2-135m, strategy=lora)``: completion-only loss,
            validation perplexity every epoch, best state restored, greedy batched generation for exact
            match / ROUGE-L, a run folder with the merged model.
  hf_peft   the PEFT + Trainer recipe: ``get_peft_model(LoraConfig(...))`` on the same attention and MLP
            projections, the same token ids and labels (prompt masked with -100), ``DataCollatorForSeq2Seq``,
            length-grouped batches, same rank / alpha / dropout / learning rate / warmup / epochs / batch;
            generation one prompt at a time with ``model.generate`` (as tutorials do).

Both are scored by the same functions: test perplexity over completion tokens (before and after), exact
match and ROUGE-L of greedy completions; training tokens/s counts real (unpadded) tokens.

A third case times generation alone (no training), transferkit against itself:

  tk_prefix the pretrained SmolLM2 completes ``--prefix-prompts`` test prompts rendered with its chat
            template under one long system prompt (~115 tokens, as a deployed assistant would carry), batched
            greedy, ``--prefix-precision`` (auto: bf16 where native), with ``generation.prefix_cache`` on and
            off in the same process (alternating, ``--prefix-repeats`` times, best of each kept). Reports
            prefill tokens run and their rate, prompt tokens per prefill second (every prompt's tokens, cached
            or run), decode tokens/s, and whether both modes wrote the same completions.

Results go to ``benchmarks/results/generation.json`` (``generation-quick.json`` for ``--quick``).

    python benchmarks/bench_generation.py              # about 15-25 minutes on 2 CPU cores
    python benchmarks/bench_generation.py --quick      # smoke run: 8 examples per task, 2 generated
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import generation_prefix  # noqa: E402

SCRIPT = Path(__file__).resolve()
CONTENDERS = ("tk_lora", "hf_peft", "tk_prefix")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ENTITY_NAMES = {"PER": "person", "LOC": "location", "ORG": "organization", "MISC": "misc"}
PROMPTS = {
    "sentiment": "Is this movie review fresh or rotten? Answer with one word.\nReview: {text}",
    "tweets": "Is the sentiment of this tweet positive or negative? Answer with one word.\nTweet: {text}",
    "entities": (
        "List the named entities in this sentence as 'text (type)' separated by '; ', "
        "with types person, location, organization or misc; answer 'none' if there are none.\n"
        "Sentence: {text}"
    ),
}


def _entities(tokens, tags) -> str:
    from seqeval.metrics.sequence_labeling import get_entities

    spans = get_entities(list(tags))
    if not spans:
        return "none"
    return "; ".join(f"{' '.join(tokens[s : e + 1])} ({ENTITY_NAMES[t]})" for t, s, e in spans)


def instruction_set(per_task: int, seed: int) -> dict[str, list[dict]]:
    """``{split: [{"prompt", "completion", "task"}]}``: seeded samples of each catalog data set's own split."""
    from transferkit.data.catalog import load_catalog_dataset

    sizes = {"train": per_task, "validation": max(2, per_task // 5), "test": max(2, per_task // 4)}
    out: dict[str, list[dict]] = {s: [] for s in sizes}
    sources = {"sentiment": "rotten_tomatoes", "tweets": "vader_tweets", "entities": "conll2003"}
    for task, name in sources.items():
        data = load_catalog_dataset(name)
        for split, n in sizes.items():
            frame = data[split].sample(n=min(n, len(data[split])), random_state=seed)
            for row in frame.to_dict(orient="records"):
                if task == "entities":
                    text, completion = " ".join(row["tokens"]), _entities(row["tokens"], row["tags"])
                else:
                    text, completion = str(row["text"]), str(row["label"])
                out[split].append(
                    {"prompt": PROMPTS[task].format(text=text), "completion": completion, "task": task}
                )
    return out


def _write(sets: dict[str, list[dict]], folder: Path) -> dict[str, Path]:
    paths = {}
    for split, rows in sets.items():
        paths[split] = folder / f"{split}.jsonl"
        with paths[split].open("w") as f:
            for r in rows:
                f.write(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n")
    return paths


def _settings(args) -> list[str]:
    return [
        "task.type=generation", "backbone.name=smollm2-135m", f"backbone.max_length={args.max_length}",
        "generation.chat_template=true", f"generation.max_new_tokens={args.max_new_tokens}",
        f"generation.eval_samples={args.eval_samples}", "strategy.name=lora", f"strategy.r={args.r}",
        f"strategy.alpha={2 * args.r}", "strategy.dropout=0.1", f"strategy.lr_multiplier={args.lr_multiplier}",
        f"training.epochs={args.epochs}", f"training.batch_size={args.batch_size}",
        f"training.eval_batch_size={args.eval_batch_size}", f"training.learning_rate={args.learning_rate}",
        f"training.seed={args.seed}", "training.progress=false", "output.tensorboard=false",
        "evaluation.pretrained_baseline=true",
    ]  # fmt: skip


def worker_tk_lora(args) -> dict:
    import transferkit
    from transferkit.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        paths = _write(instruction_set(args.per_task, args.seed), Path(tmp))
        overrides = _settings(args) + [
            f"data.train={paths['train']}", f"data.validation={paths['validation']}",
            f"data.test={paths['test']}", f"output.dir={tmp}/run",
        ]  # fmt: skip
        t0 = time.perf_counter()
        run = transferkit.fit(config=load_config(None, overrides))
        wall = time.perf_counter() - t0
        m = run.metrics
    return {
        "wall_s": wall,
        "train_s": m["training"]["train_seconds"],
        "train_tokens_per_s": m["training"]["train_tokens_per_second"],
        "perplexity_before": m["pretrained_baseline"]["test"]["perplexity"],
        "perplexity_after": m["test"]["perplexity"],
        "exact_match": m["test"].get("exact_match"),
        "rouge_l": m["test"].get("rouge_l"),
        "generation_tokens_per_s": m["test"].get("generation_tokens_per_second"),
        "prefill_tokens_per_s": m["test"].get("prefill_tokens_per_second"),
        "decode_tokens_per_s": m["test"].get("decode_tokens_per_second"),
        "precision": m["training"].get("precision", {}).get("name"),
        "trainable_parameters": m["trainable_parameters"],
        "samples": m["test"].get("samples", [])[:3],
        "peak_rss_mib": common.peak_rss_mib(),
    }


def _test_perplexity(model, rows, collator, batch_size: int) -> float:
    import torch

    from transferkit.tasks.generation.model import nll_per_example

    model.eval()
    nll = tokens = 0.0
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            batch = collator(
                [
                    {k: r[k] for k in ("input_ids", "attention_mask", "labels")}
                    for r in rows[i : i + batch_size]
                ]
            )
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            stats = nll_per_example(logits, batch["labels"])
            nll, tokens = nll + float(stats[:, 0].sum()), tokens + float(stats[:, 1].sum())
    return math.exp(nll / tokens)


def worker_hf_peft(args) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from transferkit.backbones import resolve_backbone
    from transferkit.config import load_config
    from transferkit.tasks.generation.data import Example, encode, prompt_ids, render
    from transferkit.tasks.generation.generate import exact_match, rouge_l
    from transferkit.tasks.generation.model import load_tokenizer

    cfg = load_config(None, _settings(args) + ["data.train=unused.jsonl"])
    spec = resolve_backbone(cfg.backbone)
    tok = load_tokenizer(spec.tokenizer)
    sets = instruction_set(args.per_task, args.seed)

    def rows(split):
        out = []
        for r in sets[split]:
            ids, labels, _ = encode(
                Example(r["prompt"], r["completion"]), tok, cfg.generation, args.max_length
            )
            out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
        return out

    train, test = rows("train"), rows("test")
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(spec.weights, dtype=torch.float32)
    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    before = _test_perplexity(model, test, collator, args.eval_batch_size)
    lora = LoraConfig(
        r=args.r, lora_alpha=2 * args.r, lora_dropout=0.1, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
            learning_rate=args.learning_rate * args.lr_multiplier, warmup_steps=0.06, weight_decay=0.01,
            lr_scheduler_type="linear", max_grad_norm=1.0, train_sampling_strategy="group_by_length",
            save_strategy="no",
            eval_strategy="no", report_to=[], logging_steps=50, seed=args.seed, use_cpu=True,
            disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=collator)
        t_train = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t_train
    tokens = sum(len(r["input_ids"]) for r in train) * args.epochs
    after = _test_perplexity(model, test, collator, args.eval_batch_size)
    # generation as tutorials write it: one prompt at a time
    refs, prompts = [], []
    for r in sets["test"][: args.eval_samples]:
        p, _, templated = render(Example(r["prompt"], r["completion"]), tok, cfg.generation)
        prompts.append(prompt_ids(p, tok, templated))
        refs.append(r["completion"])
    model.eval()
    texts, generated = [], 0
    t_gen = time.perf_counter()
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids])
            out = model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=args.max_new_tokens,
                do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )[0, len(ids) :].tolist()  # fmt: skip
            if tok.eos_token_id in out:
                out = out[: out.index(tok.eos_token_id)]
            generated += len(out)
            texts.append(tok.decode(out, skip_special_tokens=True))
    gen_s = time.perf_counter() - t_gen
    return {
        "wall_s": time.perf_counter() - t0,
        "train_s": train_s,
        "train_tokens_per_s": tokens / train_s,
        "perplexity_before": before,
        "perplexity_after": after,
        "exact_match": exact_match(texts, refs),
        "rouge_l": rouge_l(texts, refs),
        "generation_tokens_per_s": generated / gen_s if gen_s else 0.0,
        "trainable_parameters": trainable,
        "samples": [{"completion": t, "reference": r} for t, r in list(zip(texts, refs, strict=True))[:3]],
        "peak_rss_mib": common.peak_rss_mib(),
    }


def worker_tk_prefix(args) -> dict:
    rows = instruction_set(max(4, 4 * args.prefix_prompts // 3), args.seed)["test"][: args.prefix_prompts]
    return generation_prefix.measure(args, rows, _settings(args)) | {"peak_rss_mib": common.peak_rss_mib()}


WORKERS = {"tk_lora": worker_tk_lora, "hf_peft": worker_hf_peft, "tk_prefix": worker_tk_prefix}


def report(runs: dict) -> list[str]:
    head = f"{'contender':<9} {'ppl before':>10} {'ppl after':>9} {'exact':>6} {'ROUGE-L':>7} {'train tok/s':>11} {'gen tok/s':>9} {'train s':>8} {'wall s':>7} {'RSS MiB':>8}"  # fmt: skip
    lines = [head]
    for name, r in runs.items():
        if "error" in r:
            lines.append(f"{name:<9} {r['error']}")
            continue
        if name == "tk_prefix":
            continue  # a generation-only case: its own lines below
        lines.append(
            f"{name:<9} {r['perplexity_before']:>10.2f} {r['perplexity_after']:>9.2f} {r['exact_match']:>6.3f} "
            f"{r['rouge_l']:>7.3f} {r['train_tokens_per_s']:>11.1f} {r['generation_tokens_per_s']:>9.1f} "
            f"{r['train_s']:>8.1f} {r['wall_s']:>7.1f} {r['peak_rss_mib']:>8.0f}"
        )
    for name, r in runs.items():  # generation split into its two phases (transferkit measures both)
        if r.get("prefill_tokens_per_s"):
            lines.append(
                f"{name}: prefill {r['prefill_tokens_per_s']:.1f} tokens/s, decode {r['decode_tokens_per_s']:.1f}"
                f" tokens/s (batched greedy generation, precision {r.get('precision')})"
            )
    if "on" in runs.get("tk_prefix", {}):
        lines.extend(generation_prefix.report(runs["tk_prefix"]))
    ours, theirs = runs.get("tk_lora", {}), runs.get("hf_peft", {})
    if "train_s" in ours and "train_s" in theirs:
        lines.append(
            f"ratios transferkit / Trainer+PEFT: training tokens/s {ours['train_tokens_per_s'] / theirs['train_tokens_per_s']:.2f}x, "
            f"generation tokens/s {ours['generation_tokens_per_s'] / theirs['generation_tokens_per_s']:.2f}x, "
            f"wall {theirs['wall_s'] / ours['wall_s']:.2f}x faster"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-task", type=int, default=200, help="training examples per task (3 tasks)")
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-batch-size", type=int, default=16)
    ap.add_argument(
        "--learning-rate", type=float, default=1e-4, help="base lr; adapters at lr x --lr-multiplier"
    )
    ap.add_argument("--lr-multiplier", type=float, default=10.0)
    ap.add_argument("--r", type=int, default=8, help="LoRA rank (alpha = 2r)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument(
        "--eval-samples", type=int, default=48, help="test prompts completed for exact match / ROUGE-L"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prefix-prompts", type=int, default=48, help="tk_prefix: test prompts completed")
    ap.add_argument("--prefix-batch-size", type=int, default=16, help="tk_prefix: prompts per batch")
    ap.add_argument("--prefix-repeats", type=int, default=2, help="tk_prefix: runs of each mode (best kept)")
    ap.add_argument(
        "--prefix-precision", default="auto", help="tk_prefix: auto (bf16 where native), fp32 or bf16"
    )
    common.add_contender_args(ap, CONTENDERS, "smoke run: 8 examples per task, 2 generated")
    args = ap.parse_args(argv)
    if args.quick:
        args.per_task, args.eval_samples, args.max_new_tokens = 8, 2, 8
        args.prefix_prompts, args.prefix_batch_size = 8, 4
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return common.contenders_main(SCRIPT, argv, parse_args(argv), WORKERS, report, "generation")


if __name__ == "__main__":
    sys.exit(main())
