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
import shutil
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer

from transferkit import artifacts, hardware
from transferkit.artifacts import RunResult
from transferkit.backbones import resolve_backbone
from transferkit.config import RunConfig
from transferkit.errors import ConfigError, RunError
from transferkit.evaluation import save_training_curves
from transferkit.evaluation.guard import keep_better
from transferkit.inference import forward_in_order
from transferkit.manifest import GenerationFields, RunManifest, write_manifest
from transferkit.strategies import STRATEGIES, count_parameters, strategy_settings
from transferkit.strategies.base import StrategyPlan
from transferkit.tasks.generation.data import LMCollator, LMDataset, prompt_ids, render
from transferkit.tasks.generation.generate import generation_scores, perplexity
from transferkit.tasks.generation.model import CausalLMTransfer, build_causal_lm, lm_forward
from transferkit.tasks.generation.sources import load_generation_splits
from transferkit.training import strategy_choice as auto
from transferkit.training.loop import make_accelerator, train_loop
from transferkit.utils.io import publish_folder

log = logging.getLogger("transferkit")
ALL_WEIGHTS = ("full", "discriminative")  # strategies whose LM head trains by default


def load_tokenizer(source: str):
    """The backbone's tokenizer, with a padding token (EOS when it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# head, linear-probe, lp-ft and gradual are refused by the task's spec before fit; others by their plan here


def _refuse(name: str) -> ConfigError:
    return ConfigError(
        f"strategy.name: {name!r} trains a new head on pooled features or unfreezes from one; it does not "
        "apply to generation. Use full, lora, adalora, ia3, top-k or discriminative"
    )


def _check_plan(name: str, plan: StrategyPlan) -> None:
    if plan.closed_form or plan.probe_init or plan.cache == "features" or plan.stages:
        raise _refuse(name)
    if (
        plan.cache == "hidden"
    ):  # the hidden-state cache pools for a classifier; a causal LM re-runs the bottom
        plan.cache = None


def _head_policy(model: CausalLMTransfer, plan: StrategyPlan, train_head: bool) -> None:
    """Freezes the LM head unless it should train; keeps each trainable parameter in one optimizer group."""
    if not train_head:
        if model.tied and any(p.requires_grad for p in model.backbone.get_input_embeddings().parameters()):
            log.info(
                "the LM head is tied to the input embeddings: both stay frozen (generation.train_lm_head)"
            )
        model.head.requires_grad_(False)
    seen: set[int] = set()
    groups = []
    for g in plan.param_groups:  # a tied head appears under backbone and head: keep its first group
        params = [p for p in g["params"] if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({**g, "params": params})
    plan.param_groups = groups


def _eval_prompts(examples, tokenizer, cfg: RunConfig) -> tuple[list[list[int]], list[str]]:
    """Prompt ids and reference completions of the first ``generation.eval_samples`` examples."""
    prompts, refs = [], []
    for e in examples[: cfg.generation.eval_samples]:
        prompt, _, templated = render(e, tokenizer, cfg.generation)
        prompts.append(prompt_ids(prompt, tokenizer, templated)[-cfg.backbone.max_length :])
        refs.append(e.completion)
    return prompts, refs


def fit_generation(cfg: RunConfig, frames: dict[str, pd.DataFrame] | None, resume: bool = False) -> RunResult:
    """Fine-tunes a causal LM on prompt/completion pairs (see :func:`transferkit.fit`)."""
    t_start = time.perf_counter()
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    if cfg.data.train == "<DataFrame>" and not (frames and "train" in frames):
        raise RunError("this run was trained from pandas DataFrames: pass frames={'train': ...} to resume it")
    examples, source = load_generation_splits(cfg, frames)
    spec = resolve_backbone(cfg.backbone)
    accelerator = make_accelerator(cfg.training)
    main = accelerator.is_main_process

    tokenizer = load_tokenizer(spec.tokenizer)
    g, max_len = cfg.generation, cfg.backbone.max_length
    data = {
        s: LMDataset(examples[s], tokenizer, g, max_len, packing=g.packing and s == "train")
        for s in ("train", "validation", "test")
    }
    collator = LMCollator(tokenizer.pad_token_id)
    model = build_causal_lm(spec, cfg.training.seed)
    model.to(accelerator.device)
    cfg, decision = auto.resolve(cfg, lambda: auto.measure(
        cfg, model, lm_forward, data["train"], collator, None, len(data["validation"]) + len(data["test"])
    ))  # fmt: skip
    run_dir = artifacts.open_run(cfg, accelerator, resume)
    decision = auto.remember(run_dir, decision, main)

    def split_perplexity(module, split: str) -> dict:
        stats = forward_in_order(
            lambda b: lm_forward(module, b), data[split], collator, cfg.training.eval_batch_size, accelerator,
            max_tokens=cfg.training.eval_max_tokens,
        )  # fmt: skip
        return perplexity(stats)

    metrics: dict = {}
    if cfg.evaluation.pretrained_baseline and not resume:
        model.eval()
        metrics["pretrained_baseline"] = {s: split_perplexity(model, s) for s in ("validation", "test")} | {
            "method": "the backbone before fine-tuning"
        }

    plan = STRATEGIES.get(cfg.strategy.name).apply(model, strategy_settings(cfg.strategy), cfg.training)
    _check_plan(cfg.strategy.name, plan)
    train_head = g.train_lm_head if g.train_lm_head is not None else cfg.strategy.name in ALL_WEIGHTS
    _head_policy(model, plan, train_head)
    trainable, total = count_parameters(model)
    log.info("strategy %s: %s of %s parameters train", cfg.strategy.name, f"{trainable:,}", f"{total:,}")

    metric = cfg.training.metric_for_best or "perplexity"
    result = train_loop(
        model, lm_forward, plan, data["train"], data["validation"], collator, perplexity, cfg.training,
        "causal_lm", metric, log_dir=run_dir / "logs", checkpoint_dir=run_dir / "checkpoints", resume=resume,
        tensorboard=cfg.output.tensorboard, accelerator=accelerator,
    )  # fmt: skip
    model = accelerator.unwrap_model(model)
    merged = plan.merge_adapter(model, run_dir, cfg.output.save_model, main)

    def final_scores(module) -> dict[str, dict]:
        module.eval()
        out = {}
        for split in ("validation", "test"):
            out[split] = split_perplexity(module, split)
            if g.eval_samples:
                prompts, refs = _eval_prompts(examples[split], tokenizer, cfg)
                out[split] |= generation_scores(
                    module.lm, tokenizer, prompts, refs, g.max_new_tokens, cfg.training.eval_batch_size,
                    g.prefix_cache,
                )  # fmt: skip
        return out

    scores = final_scores(model)
    metrics = {"test": scores["test"], "validation": scores["validation"], **metrics}
    # the baseline is the backbone itself: kept (scored in full, generation included) if fine-tuning made it worse
    fallback = keep_better(
        metrics, metric, cfg.evaluation.keep_better,
        lambda: build_causal_lm(spec, cfg.training.seed).to(accelerator.device), final_scores,
    )  # fmt: skip
    if fallback is not None:
        model, plan, merged = fallback, StrategyPlan(param_groups=[]), False
        shutil.rmtree(run_dir / "adapter", ignore_errors=True)  # the discarded model's adapter
    if decision is not None:
        metrics["auto"] = decision
    train_seconds = result.train_seconds
    metrics.update(
        trainable_parameters=trainable,
        total_parameters=total,
        strategy=cfg.strategy.name,
        backbone=spec.name,
        task=cfg.task.type,
        best_validation_metric={"name": metric, "value": result.best_metric, "step": result.best_step},
        training=result.summary(
            time.perf_counter() - t_start,
            train_tokens_per_second=round(result.train_tokens / train_seconds, 2) if train_seconds else 0.0,
            packed_rows=len(data["train"]) if g.packing else None,
            precision=hardware.precision_of(accelerator).record(),
        ),
    )
    if main:
        _write_outputs(
            run_dir, cfg, model, plan, tokenizer, metrics, result.history, source, examples, spec, merged
        )
    accelerator.wait_for_everyone()
    return RunResult(run_dir, metrics)


def save_lm(lm, tokenizer, run_dir: Path) -> Path:
    """Saves a plain Hugging Face causal LM (``AutoModelForCausalLM``-loadable) to ``run_dir/model``."""
    final = run_dir / "model"
    with publish_folder(final) as tmp:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return final


def _write_outputs(
    run_dir, cfg, model, plan, tokenizer, metrics, history, source, examples, spec, merged
) -> None:
    artifacts.save_predictions(run_dir, metrics)  # first: everything below reads plain metrics
    g = cfg.generation
    manifest = RunManifest(
        task=cfg.task.type,
        labels=[],
        max_length=cfg.backbone.max_length,
        # chats in the data: prompts at prediction time go through the chat template as a user turn
        generation=GenerationFields(
            chat_template=g.chat_template or any(e.messages for e in examples["train"]),
            add_eos=g.add_eos,
            max_new_tokens=g.max_new_tokens,
        ),
        precision=metrics["training"]["precision"]["name"],
    )
    write_manifest(run_dir, manifest)
    if plan.save_extra is not None and not merged:
        plan.save_extra(model, run_dir)
    if cfg.output.save_model:
        save_lm(plan.plain_model(model, merged).lm, tokenizer, run_dir)
    if history:
        save_training_curves(history, run_dir / "training_curves.png")
    from transferkit.tasks.generation.card import write_generation_card

    sizes = {s: len(examples[s]) for s in ("train", "validation", "test")}
    write_generation_card(run_dir, cfg, metrics, spec.name, source, sizes)
    artifacts.save_json(run_dir / "metrics.json", metrics)
