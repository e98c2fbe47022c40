"""Token classification (named-entity recognition): one tag per word, entity spans out.

``sources.py`` turns the configured sources into validated sentences, ``data.py`` encodes them (sub-word
alignment, windows over long sentences, and back to words), ``model.py`` is the task model (saved as the
family's own ``*ForTokenClassification`` where it can be), ``fit.py`` the recipe, ``predictor.py`` the loaded
run (span decoding), ``card.py`` the model card, ``baselines.py`` the most-frequent-tag baseline and
``onnx.py`` the ONNX exporter. CoNLL readers and tagging schemes are shared data code
(:mod:`transferkit.data.conll`, read by the catalog too); metrics live in :mod:`transferkit.evaluation.ner`.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.tasks.registry import TaskSpec, register_task


def _fit(cfg, frames, resume: bool = False):
    from transferkit.tasks.token_classification.fit import fit_token_classification

    return fit_token_classification(cfg, frames, resume)


def load(run_dir: str | Path, batch_size: int = 64):
    from transferkit.tasks.token_classification.predictor import TokenPredictor

    return TokenPredictor(run_dir, batch_size)


def _tag_counts(frames):
    from transferkit.tasks.token_classification.baselines import most_frequent_tag

    return most_frequent_tag(frames)


register_task(
    TaskSpec(
        name="token-classification",
        description="Tag words / find entity spans (NER): CoNLL or JSONL tokens+tags, IOB1/IOB2/BIOES, seqeval metrics.",
        fit=_fit,  # not `fit`: the fit submodule would replace it on the package once imported
        load=load,
        inputs="tokens",
        metric_keys=("f1", "precision", "recall", "f1_macro", "accuracy"),
        config_section="tokens",
        onnx_exporter="transferkit.tasks.token_classification.onnx",
        main_metric="f1",
        budget_unit="sentences",
        label_column=None,
        cover=lambda frame: [{t.split("-", 1)[-1] for t in tags if t != "O"} for tags in frame["tags"]],
        classical=("most-frequent-tag", lambda frames: _tag_counts(frames)),
    )
)
