"""Training a token-classification run: sentences -> windows -> strategy -> training loop -> run folder.

The same loop, strategies, checkpoints and run folder as text classification. What differs:

* examples are sub-token windows of sentences (:class:`transferkit.tasks.token_classification.data.TokenWindows`), labels are
  per sub-token with -100 where the loss ignores them;
* frozen-trunk strategies (``head``, ``linear-probe``, the probe of ``lp-ft`` and the pretrained baseline)
  cache per-token features of the last layer, ``(T_i, D)`` per window; ``top-k`` caches the frozen bottom's
  per-token output as in text classification; the others run the model every step;
* validation picks the best checkpoint by entity F1 (``training.metric_for_best``, default ``f1``).
"""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np
import torch
from transformers import AutoTokenizer

from transferkit import artifacts, hardware
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import run_from
from transferkit.config import RunConfig
from transferkit.evaluation import save_training_curves
from transferkit.evaluation.guard import keep_better
from transferkit.evaluation.ner import entity_metrics
from transferkit.evaluation.scoring import PREDICTIONS
from transferkit.inference import forward_in_order, ordered_loader
from transferkit.manifest import RunManifest, TokenFields, write_manifest
from transferkit.strategies import StrategyPlan, count_parameters
from transferkit.strategies.base import plan_for
from transferkit.strategies.cache import extract_hidden
from transferkit.strategies.probe import (
    baseline_block,
    baseline_model,
    fit_probe,
    load_into_head,
    wants_features,
    wants_probe,
)
from transferkit.tasks.token_classification.card import write_token_model_card
from transferkit.tasks.token_classification.data import (
    IGNORE,
    HiddenTokens,
    TokenCollator,
    TokenWindows,
    word_logits,
)
from transferkit.tasks.token_classification.model import build_token_model, save_token_model
from transferkit.tasks.token_classification.sources import TokenSplits, load_token_splits
from transferkit.training import strategy_choice as auto
from transferkit.training.loop import TrainResult, make_accelerator, train_loop

log = logging.getLogger("transferkit")
SPLITS = ("train", "validation", "test")
PROBE_MAX_TOKENS = 50_000  # labelled tokens the linear probe is fitted on at most (seeded sample)


def continuation_ids(labels: list[str]) -> dict[int, int]:
    """Label id of a word's later sub-tokens when ``label_all_subtokens``: B-X -> I-X, others unchanged."""
    index = {name: i for i, name in enumerate(labels)}
    return {i: index.get("I-" + n[2:], i) for i, n in enumerate(labels) if n.startswith("B-")}


def score_windows(
    windows: TokenWindows, logits: torch.Tensor, true_tags, labels, scheme, predictions: bool = False
) -> dict:
    """Entity metrics (and the loss) of ``(N, T, C)`` window logits against the sentences' word tags."""
    per_word = word_logits(windows, logits)
    pred = [[labels[i] for i in w.argmax(-1).tolist()] for w in per_word]
    truth = [list(t) for t in true_tags]
    out = entity_metrics(truth, pred, scheme)
    if predictions:  # per-sentence tags for the run's test_predictions.json
        out[PREDICTIONS] = {"y_true": truth, "y_pred": pred}
    if windows.labels is not None:
        t = logits.shape[1]
        target = torch.tensor([(lab + [IGNORE] * t)[:t] for lab in windows.labels])  # (N, T)
        out["loss"] = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten()))
    return out


@torch.inference_mode()
def token_features(model, dataset: TokenWindows, collator, batch_size: int) -> list[torch.Tensor]:
    """Per window, ``(T_i, D)`` last-layer features of the frozen trunk (unpadded), in dataset order."""
    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(dataset)
    try:
        for batch in ordered_loader(dataset, collator, batch_size):
            idx = batch.pop("idx")
            batch.pop("labels", None)
            hidden = model.features(**batch)  # (B, T, D)
            lengths = batch["attention_mask"].sum(dim=1)
            for row, i in enumerate(idx.tolist()):
                out[i] = hidden[row, : int(lengths[row])].float().clone()
    finally:
        model.train(was_training)
    return out


def _labelled(features: list[torch.Tensor], labels: list[list[int]], limit: int | None, seed: int):
    """(N, D) features and (N,) ids of every labelled sub-token (at most ``limit``, seeded sample)."""
    x = torch.cat(features).numpy()
    y = np.concatenate([np.asarray(lab[: len(f)]) for f, lab in zip(features, labels, strict=True)])
    keep = np.flatnonzero(y != IGNORE)
    if limit is not None and len(keep) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=limit, replace=False))
    return x[keep], y[keep]


def _padded_logits(probe, features: list[torch.Tensor]) -> torch.Tensor:
    """(N, T, C) probe logits of per-window features, zero-padded to the longest window."""
    logits = [probe.logits(f) for f in features]
    longest = max(len(f) for f in logits)
    return torch.stack([torch.nn.functional.pad(f, (0, 0, 0, longest - len(f))) for f in logits])


def _training_view(model, plan, data, features, collator, cfg):
    """(module, forward(module, batch) -> (B, T, C) logits, data sets per split)."""
    if plan.cache == "features":
        sets = {n: HiddenTokens(features[n], data[n].labels) for n in data}
        return model.head, lambda m, b: m(b["hidden"]), sets
    if plan.cache == "hidden":
        bs = cfg.training.eval_batch_size
        hidden = {
            n: extract_hidden(model, ds, collator, bs, plan.cut - 1, cfg.training.precision)
            for n, ds in data.items()
        }
        sets = {n: HiddenTokens(hidden[n], data[n].labels) for n in data}

        def forward(m, batch):
            h = run_from(m.backbone, batch["hidden"], batch["attention_mask"], plan.cut)  # (B, T, D)
            return m.head(h)

        return model, forward, sets
    return model, lambda m, b: m(**b).logits, data


def fit_token_classification(cfg: RunConfig, frames=None, resume: bool = False):
    """Token classification's fit (see :func:`transferkit.fit`); ``--task token-classification``."""
    from transferkit.artifacts import RunResult

    t_start = time.perf_counter()
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    if cfg.training.class_weights != "none" or cfg.training.sampling != "random":
        log.warning(
            "training.class_weights / training.sampling act on whole examples: token classification ignores them"
        )
    splits: TokenSplits = load_token_splits(cfg, frames)
    spec = resolve_backbone(cfg.backbone)
    accelerator = make_accelerator(cfg.training)
    main = accelerator.is_main_process

    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    labels, scheme = splits.labels, splits.scheme
    index = {name: i for i, name in enumerate(labels)}
    model = build_token_model(spec, cfg, labels)
    tk = cfg.tokens
    data = {
        name: TokenWindows(
            tokenizer, getattr(splits, name)["tokens"].tolist(),
            [[index[t] for t in tags] for tags in getattr(splits, name)["tags"]],
            cfg.backbone.max_length, tk.stride, tk.label_all_subtokens, continuation_ids(labels),
        )
        for name in SPLITS
    }  # fmt: skip
    split_count = sum(ds.num_split for ds in data.values())
    if split_count:
        log.info("%d long sentences were cut into overlapping windows (none truncated)", split_count)
    collator = TokenCollator(tokenizer)
    types = [sorted({t[2:] for t in tags if t != "O"}) or ["O"] for tags in splits.train["tags"]]
    cfg, decision = auto.resolve(cfg, lambda: auto.measure(
        cfg, model, lambda m, b: m(**b), data["train"], collator, types,
        len(data["validation"]) + len(data["test"]),
    ))  # fmt: skip
    run_dir = artifacts.open_run(cfg, accelerator, resume)
    decision = auto.remember(run_dir, decision, main)
    plan = plan_for(model, cfg.strategy, cfg.training, accelerator.num_processes)
    trainable, total = count_parameters(model)

    features, probe, metrics = None, None, {}
    if wants_features(plan, cfg):
        bs = cfg.training.eval_batch_size
        features = {n: token_features(model, ds, collator, bs) for n, ds in data.items()}
    if features is not None and wants_probe(plan, cfg):
        seed = cfg.training.seed
        x_tr, y_tr = _labelled(features["train"], data["train"].labels, PROBE_MAX_TOKENS, seed)
        x_va, y_va = _labelled(features["validation"], data["validation"].labels, None, seed)
        probe = fit_probe(x_tr, y_tr, x_va, y_va, "single_label", len(labels), seed)
    if cfg.evaluation.pretrained_baseline and probe is not None:
        metrics["pretrained_baseline"] = baseline_block(probe, {
            s: score_windows(data[s], _padded_logits(probe, features[s]), getattr(splits, s)["tags"], labels, scheme, True)
            for s in ("validation", "test")
        }, "token features")  # fmt: skip
    if plan.probe_init or plan.closed_form:
        load_into_head(model, probe)

    module, forward, sets = _training_view(model, plan, data, features, collator, cfg)
    metric = cfg.training.metric_for_best or "f1"

    def evaluate(logits):  # the per-tag token report stays out of the training log (final metrics keep it)
        out = score_windows(data["validation"], logits, splits.validation["tags"], labels, scheme)
        out.pop("token_report")
        return out

    if plan.closed_form:
        result = TrainResult(best_metric=probe.validation_score)
    else:
        result = train_loop(
            module, forward, plan, sets["train"], sets["validation"], collator, evaluate, cfg.training,
            "single_label", metric, log_dir=run_dir / "logs", checkpoint_dir=run_dir / "checkpoints",
            resume=resume, tensorboard=cfg.output.tensorboard, accelerator=accelerator,
        )  # fmt: skip
        module = accelerator.unwrap_model(module)
    trainable = count_parameters(model)[0] if plan.stages else trainable
    merged = plan.merge_adapter(model, run_dir, cfg.output.save_model, main)
    module.eval()
    for split in ("validation", "test"):
        logits = forward_in_order(
            lambda b: forward(module, b), sets[split], collator, cfg.training.eval_batch_size, accelerator,
            max_tokens=cfg.training.eval_max_tokens,
        )  # fmt: skip
        metrics[split] = score_windows(
            data[split], logits, getattr(splits, split)["tags"], labels, scheme, True
        )
    metrics = {"test": metrics.pop("test"), "validation": metrics.pop("validation"), **metrics}
    fallback = keep_better(
        metrics,
        metric,
        cfg.evaluation.keep_better,
        lambda: baseline_model(lambda c: build_token_model(spec, c, labels), cfg, probe),
    )
    if fallback is not None:  # the pretrained trunk + the token probe: nothing strategy-specific to save
        model, plan, merged = fallback, StrategyPlan(param_groups=[]), False
        shutil.rmtree(run_dir / "adapter", ignore_errors=True)  # the discarded model's adapter
    if decision is not None:
        metrics["auto"] = decision
    metrics.update(
        trainable_parameters=trainable, total_parameters=total, strategy=cfg.strategy.name,
        backbone=spec.name, task=cfg.task.type, scheme=scheme,
        best_validation_metric={"name": metric, "value": result.best_metric, "step": result.best_step},
        training=result.summary(
            time.perf_counter() - t_start, windows_split=split_count,
            precision=hardware.precision_of(accelerator).record(),
        ),
    )  # fmt: skip
    if main:
        _write_outputs(run_dir, cfg, model, plan, tokenizer, metrics, result.history, splits, spec, merged)
    accelerator.wait_for_everyone()
    return RunResult(run_dir, metrics)


def _write_outputs(run_dir, cfg, model, plan, tokenizer, metrics, history, splits, spec, merged) -> None:
    artifacts.save_predictions(run_dir, metrics)  # first: everything below reads plain metrics
    manifest = RunManifest(
        task=cfg.task.type,
        labels=splits.labels,
        max_length=cfg.backbone.max_length,
        tokens=TokenFields(scheme=splits.scheme, stride=cfg.tokens.stride),
        precision=metrics["training"]["precision"]["name"],
    )
    write_manifest(run_dir, manifest)
    if plan.save_extra is not None and not merged:
        plan.save_extra(model, run_dir)
    saved = None
    if cfg.output.save_model:
        _, saved = save_token_model(plan.plain_model(model, merged), tokenizer, run_dir)
    if history:
        save_training_curves(history, run_dir / "training_curves.png")
    sizes = {n: len(getattr(splits, n)) for n in SPLITS}
    write_token_model_card(run_dir, cfg, metrics, spec.name, splits, sizes, saved)
    artifacts.save_json(run_dir / "metrics.json", metrics)
