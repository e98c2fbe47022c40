"""Text classification (single-label, multi-label, regression): the core task.

``model.py`` is the task model (backbone + pooling + head, registered with transformers' auto classes),
``data.py`` its examples (tokenised texts, cached features and hidden states), ``fit.py`` the recipe,
``predictor.py`` the loaded run, ``card.py`` the model card and ``onnx.py`` the ONNX exporter and its
onnxruntime predictor. Reading and validating labelled tables (:mod:`transferkit.data.splits`) and the
length-grouped batches with dynamic padding (:mod:`transferkit.data.text`) are the shared data layer: the
training loop, the frozen-feature cache, compression and the image task use the same pieces.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.tasks.registry import TaskSpec, register_task


def _fit(cfg, frames, resume: bool = False):
    from transferkit.tasks.text_classification.fit import fit_text_classification

    _check_not_images(cfg)
    return fit_text_classification(cfg, frames, resume)


def _check_not_images(cfg) -> None:
    """Image data given to a text run (the task defaults to text): say which flag is missing."""
    from transferkit.data import DATASETS
    from transferkit.errors import ConfigError

    data = cfg.data
    task = DATASETS.entry(data.dataset).extra.get("task") if data.dataset in DATASETS else None
    if task not in (None, cfg.task.type):
        raise ConfigError(f"data.dataset: {data.dataset!r} is made for {task}; add --task {task}")
    train = Path(str(data.train)) if data.train else None
    if train is not None and (train.is_dir() or train.suffix.lower() == ".npz"):
        raise ConfigError(
            f"data.train: {train} is an image folder or .npz file; add --task image-classification"
        )


def load(run_dir: str | Path, batch_size: int = 64):
    from transferkit.tasks.text_classification.predictor import Predictor

    return Predictor(run_dir, batch_size)


def _tfidf(frames):
    from transferkit.tasks.text_classification.baselines import tfidf_logistic

    return tfidf_logistic(frames)


register_task(
    TaskSpec(
        name="text-classification",
        description="Label whole texts: single-label, multi-label or regression (CSV/TSV/JSONL/Parquet text,label).",
        fit=_fit,  # not `fit`: the fit submodule would replace it on the package once imported
        load=load,
        inputs="text",
        metric_keys=("accuracy", "f1_macro", "precision_macro", "recall_macro", "mae", "rmse", "r2"),
        onnx_exporter="transferkit.tasks.text_classification.onnx",
        compressible=True,  # prune / distil work on TransferkitForSequenceClassification
        classical=("tfidf+lr", lambda frames: _tfidf(frames)),
    )
)
