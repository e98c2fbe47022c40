"""``fit`` for text generation: causal-LM fine-tuning with the shared loop, strategies and run folder.

The loss is next-token cross-entropy on completion tokens only. Validation during training scores
perplexity (the best checkpoint has the lowest); the end of the run adds exact match and ROUGE-L of greedy
completions of up to ``generation.eval_samples`` validation and test examples.

Strategies: ``full``, ``lora``, ``adalora``, ``ia3``, ``top-k`` (no hidden-state cache: the frozen bottom runs
each step) and ``discriminative``. Strategies that fit a new classifier on pooled features (``head``,
``linear-probe``, ``lp-ft``) or unfreeze from a new head (``gradual``) have no meaning for a pretrained LM head
and are refused. The LM head trains only when the strategy trains every weight (``generation.train_lm_head``).
"""

from __future__ import annotations

import logging

import pandas as pd

from transferkit.artifacts import RunResult
from transferkit.backbones import resolve_backbone
from transferkit.config import RunConfig
from transferkit.inference import forward_in_order
from transferkit.manifest import GenerationFields, RunManifest
from transferkit.strategies import STRATEGIES, count_parameters, strategy_settings
from transferkit.tasks import recipe
from transferkit.tasks.generation.card import write_generation_card
from transferkit.tasks.generation.data import LMCollator, LMDataset, eval_prompts
from transferkit.tasks.generation.generate import generation_scores, perplexity
from transferkit.tasks.generation.model import (
    ALL_WEIGHTS,
    build_causal_lm,
    check_plan,
    head_policy,
    lm_forward,
    load_tokenizer,
    save_lm,
)
from transferkit.tasks.generation.sources import load_generation_splits
from transferkit.training import strategy_choice as auto

log = logging.getLogger("transferkit")


def fit_generation(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None, resume: bool = False) -> RunResult:
    """Fine-tunes a causal LM on prompt/completion pairs (see :func:`transferkit.fit`)."""
    run = recipe.begin(cfg, resume)
    recipe.check_frames(cfg, frames)
    examples, source = load_generation_splits(cfg, frames)
    spec = resolve_backbone(cfg.backbone)

    tokenizer = load_tokenizer(spec.tokenizer)
    g, max_len = cfg.generation, cfg.backbone.max_length
    data = {
        s: LMDataset(examples[s], tokenizer, g, max_len, packing=g.packing and s == "train")
        for s in ("train", "validation", "test")
    }
    collator = LMCollator(tokenizer.pad_token_id)
    model = build_causal_lm(spec, cfg.training.seed)
    model.to(run.accelerator.device)
    cfg = recipe.open_run(run, lambda: auto.measure(
        cfg, model, lm_forward, data["train"], collator, None, len(data["validation"]) + len(data["test"])
    ))  # fmt: skip

    def split_perplexity(module, split: str) -> dict:
        stats = forward_in_order(
            lambda b: lm_forward(module, b), data[split], collator, cfg.training.eval_batch_size,
            run.accelerator, max_tokens=cfg.training.eval_max_tokens,
        )  # fmt: skip
        return perplexity(stats)

    metrics: dict = {}
    if cfg.evaluation.pretrained_baseline and not resume:
        model.eval()
        scores = {s: split_perplexity(model, s) for s in ("validation", "test")}
        metrics["pretrained_baseline"] = scores | {"method": "the backbone before fine-tuning"}

    plan = STRATEGIES.get(cfg.strategy.name).apply(model, strategy_settings(cfg.strategy), cfg.training)
    check_plan(cfg.strategy.name, plan)
    head_policy(
        model, plan, g.train_lm_head if g.train_lm_head is not None else cfg.strategy.name in ALL_WEIGHTS
    )
    trainable, total = count_parameters(model)
    log.info("strategy %s: %s of %s parameters train", cfg.strategy.name, f"{trainable:,}", f"{total:,}")

    metric = cfg.training.metric_for_best or "perplexity"
    result, model = recipe.train(
        run, plan, None, model, lm_forward, data["train"], data["validation"], collator, perplexity,
        "causal_lm", metric,
    )  # fmt: skip
    trainable, merged = recipe.after_training(run, model, plan, trainable)

    def final_scores(module) -> dict[str, dict]:
        module.eval()
        out = {}
        for split in ("validation", "test"):
            out[split] = split_perplexity(module, split)
            if g.eval_samples:
                prompts, refs = eval_prompts(examples[split], tokenizer, cfg)
                out[split] |= generation_scores(
                    module.lm, tokenizer, prompts, refs, g.max_new_tokens, cfg.training.eval_batch_size,
                    g.prefix_cache,
                )  # fmt: skip
        return {"test": out["test"], "validation": out["validation"]}

    metrics = {**final_scores(model), **metrics}
    # the baseline is the backbone itself: kept (scored in full, generation included) if fine-tuning made it worse
    model, plan, merged = recipe.guard(
        run, metrics, metric, lambda: build_causal_lm(spec, cfg.training.seed).to(run.accelerator.device),
        model, plan, merged, final_scores, result.guard_min_delta,
    )  # fmt: skip
    seconds = result.train_seconds
    recipe.record(
        run, metrics, backbone=spec.name, metric=metric, result=result, trainable=trainable, total=total,
        training={
            "train_tokens_per_second": round(result.train_tokens / seconds, 2) if seconds else 0.0,
            "packed_rows": len(data["train"]) if g.packing else None,
        },
    )  # fmt: skip
    manifest = _manifest(cfg, examples, metrics["training"]["precision"]["name"])
    sizes = {s: len(examples[s]) for s in ("train", "validation", "test")}
    return recipe.finish(run, metrics, lambda: recipe.write_run(
        run.run_dir, cfg, metrics, manifest, model, plan, merged, result.history,
        lambda final: save_lm(final.lm, tokenizer, run.run_dir),
        lambda saved: write_generation_card(run.run_dir, cfg, metrics, spec.name, source, sizes),
    ))  # fmt: skip


def _manifest(cfg: RunConfig, examples, precision: str) -> RunManifest:
    g = cfg.generation
    return RunManifest(
        task=cfg.task.type, labels=[], max_length=cfg.backbone.max_length,
        # chats in the data: prompts at prediction time go through the chat template as a user turn
        generation=GenerationFields(
            chat_template=g.chat_template or any(e.messages for e in examples["train"]),
            add_eos=g.add_eos, max_new_tokens=g.max_new_tokens,
        ),
        precision=precision,
    )  # fmt: skip
