"""Token classification (named-entity recognition): one tag per word, entity spans out."""

from __future__ import annotations

from pathlib import Path

from transferkit.tasks.registry import TaskSpec, register_task


def fit(cfg, frames, resume: bool = False):
    from transferkit.ner.fit import fit_token_classification

    return fit_token_classification(cfg, frames, resume)


def load(run_dir: str | Path, batch_size: int = 64):
    from transferkit.ner.predictor import TokenPredictor

    return TokenPredictor(run_dir, batch_size)


def _tag_counts(frames):
    from transferkit.ner.baselines import most_frequent_tag

    return most_frequent_tag(frames)


register_task(
    TaskSpec(
        name="token-classification",
        description="Tag words / find entity spans (NER): CoNLL or JSONL tokens+tags, IOB1/IOB2/BIOES, seqeval metrics.",
        fit=fit,
        load=load,
        inputs="tokens",
        metric_keys=("f1", "precision", "recall", "f1_macro", "accuracy"),
        config_section="tokens",
        onnx_exporter="transferkit.compression.onnx_tokens",
        main_metric="f1",
        budget_unit="sentences",
        label_column=None,
        cover=lambda frame: [{t.split("-", 1)[-1] for t in tags if t != "O"} for tags in frame["tags"]],
        classical=("most-frequent-tag", lambda frames: _tag_counts(frames)),
    )
)
