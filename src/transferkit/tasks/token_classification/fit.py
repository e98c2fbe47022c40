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

from transformers import AutoTokenizer

from transferkit.artifacts import RunResult
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import run_from
from transferkit.config import RunConfig
from transferkit.manifest import RunManifest, TokenFields
from transferkit.strategies import count_parameters
from transferkit.strategies.base import plan_for
from transferkit.strategies.cache import extract_hidden
from transferkit.strategies.probe import baseline_model, wants_features
from transferkit.tasks import recipe
from transferkit.tasks.token_classification.card import write_token_model_card
from transferkit.tasks.token_classification.data import HiddenTokens, TokenCollator, TokenWindows
from transferkit.tasks.token_classification.features import (
    PROBE_MAX_TOKENS,
    continuation_ids,
    labelled_tokens,
    padded_logits,
    score_windows,
    token_features,
)
from transferkit.tasks.token_classification.model import build_token_model, save_token_model
from transferkit.tasks.token_classification.sources import TokenSplits, load_token_splits
from transferkit.training import strategy_choice as auto

log = logging.getLogger("transferkit")
SPLITS = ("train", "validation", "test")


def _windows(cfg: RunConfig, splits: TokenSplits, tokenizer) -> tuple[dict[str, TokenWindows], int]:
    """Each split's sentences as sub-token windows, and how many sentences were cut into several."""
    index = {name: i for i, name in enumerate(splits.labels)}
    tk = cfg.tokens
    data = {
        name: TokenWindows(
            tokenizer, getattr(splits, name)["tokens"].tolist(),
            [[index[t] for t in tags] for tags in getattr(splits, name)["tags"]],
            cfg.backbone.max_length, tk.stride, tk.label_all_subtokens, continuation_ids(splits.labels),
        )
        for name in SPLITS
    }  # fmt: skip
    split_count = sum(ds.num_split for ds in data.values())
    if split_count:
        log.info("%d long sentences were cut into overlapping windows (none truncated)", split_count)
    return data, split_count


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


def fit_token_classification(cfg: RunConfig, frames=None, resume: bool = False) -> RunResult:
    """Token classification's fit (see :func:`transferkit.fit`); ``--task token-classification``."""
    run = recipe.begin(cfg, resume)
    if cfg.training.class_weights != "none" or cfg.training.sampling != "random":
        log.warning(
            "training.class_weights / training.sampling act on whole examples: token classification ignores them"
        )
    splits: TokenSplits = load_token_splits(cfg, frames)
    spec = resolve_backbone(cfg.backbone)

    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    labels, scheme = splits.labels, splits.scheme
    model = build_token_model(spec, cfg, labels)
    data, split_count = _windows(cfg, splits, tokenizer)
    collator = TokenCollator(tokenizer)
    types = [sorted({t[2:] for t in tags if t != "O"}) or ["O"] for tags in splits.train["tags"]]
    cfg = recipe.open_run(run, lambda: auto.measure(
        cfg, model, lambda m, b: m(**b), data["train"], collator, types,
        len(data["validation"]) + len(data["test"]),
    ))  # fmt: skip
    plan = plan_for(model, cfg.strategy, cfg.training, run.accelerator.num_processes)
    trainable, total = count_parameters(model)

    features = None
    if wants_features(plan, cfg):
        bs = cfg.training.eval_batch_size
        features = {n: token_features(model, ds, collator, bs) for n, ds in data.items()}

    def tags(split: str):
        return getattr(splits, split)["tags"]

    def probe_examples():
        seed = cfg.training.seed
        x_tr, y_tr = labelled_tokens(features["train"], data["train"].labels, PROBE_MAX_TOKENS, seed)
        return (x_tr, y_tr, *labelled_tokens(features["validation"], data["validation"].labels, None, seed))

    probe, metrics = recipe.probe_and_baseline(
        run, model, plan, features, probe_examples, "single_label", len(labels),
        lambda probe, s: score_windows(data[s], padded_logits(probe, features[s]), tags(s), labels, scheme, True),
        "token features",
    )  # fmt: skip

    module, forward, sets = _training_view(model, plan, data, features, collator, cfg)
    metric = cfg.training.metric_for_best or "f1"

    def evaluate(logits):  # the per-tag token report stays out of the training log (final metrics keep it)
        out = score_windows(data["validation"], logits, tags("validation"), labels, scheme)
        out.pop("token_report")
        return out

    result, module = recipe.train(
        run, plan, probe, module, forward, sets["train"], sets["validation"], collator, evaluate,
        "single_label", metric,
    )  # fmt: skip
    trainable, merged = recipe.after_training(run, model, plan, trainable)
    scores = recipe.final_scores(
        run, module, forward, sets, collator,
        lambda logits, s: score_windows(data[s], logits, tags(s), labels, scheme, True),
    )  # fmt: skip
    metrics = {**scores, **metrics}
    model, plan, merged = recipe.guard(
        run, metrics, metric, lambda: baseline_model(lambda c: build_token_model(spec, c, labels), cfg, probe),
        model, plan, merged, min_delta=result.guard_min_delta,
    )  # fmt: skip
    recipe.record(
        run, metrics, backbone=spec.name, metric=metric, result=result, trainable=trainable, total=total,
        task_fields={"scheme": scheme}, training={"windows_split": split_count},
    )  # fmt: skip
    manifest = RunManifest(
        task=cfg.task.type, labels=labels, max_length=cfg.backbone.max_length,
        tokens=TokenFields(scheme=scheme, stride=cfg.tokens.stride),
        precision=metrics["training"]["precision"]["name"],
    )  # fmt: skip
    sizes = {n: len(getattr(splits, n)) for n in SPLITS}
    return recipe.finish(run, metrics, lambda: recipe.write_run(
        run.run_dir, cfg, metrics, manifest, model, plan, merged, result.history,
        lambda final: save_token_model(final, tokenizer, run.run_dir)[1],
        lambda saved: write_token_model_card(run.run_dir, cfg, metrics, spec.name, splits, sizes, saved),
    ))  # fmt: skip
