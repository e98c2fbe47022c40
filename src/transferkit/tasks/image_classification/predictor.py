"""Loading a finished image classification run and predicting with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transferkit.artifacts import read_run
from transferkit.data.images import check_images, read_image_csv, read_images
from transferkit.data.readers import read_table
from transferkit.errors import DataError, RunError
from transferkit.evaluation.scoring import probabilities, score
from transferkit.inference import forward_in_order
from transferkit.predictors import (
    BasePredictor,
    add_columns,
    apply_unmerged_adapter,
    refuse_existing,
    write_table,
)
from transferkit.tasks.image_classification.data import ImageCollator, ImageDataset, Preprocessor


def as_image_list(inputs) -> list:
    """One image (path, PIL image, (H, W) / (H, W, 3|4) array) or many (a list, or an (N, H, W[, C]) array)."""
    if isinstance(inputs, str | Path | Image.Image):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 2 or (inputs.ndim == 3 and inputs.shape[-1] in (3, 4)):
            return [inputs]
        return list(inputs)  # (N, H, W) or (N, H, W, C)
    return list(inputs)


class ImagePredictor(BasePredictor):
    """A loaded image run: ``predict`` images into labels with probabilities.

    Args:
        run_dir: A folder written by ``transferkit fit --task image-classification``.
        batch_size: Images per forward pass.

    Example:
        >>> model = transferkit.load("runs/mnist5k-linear-probe-20261123-120000")  # doctest: +SKIP
        >>> model.predict(["digit.png"])  # doctest: +SKIP
        [{'label': '7', 'score': 0.98, 'scores': {'0': 0.001, ...}}]
    """

    def __init__(self, run_dir: str | Path, batch_size: int = 64):
        # accelerate, safetensors load on first use, not when predictor is imported
        from transferkit.tasks.image_classification.model import TransferkitForImageClassification

        self.run_dir, manifest, self.metrics = read_run(run_dir)
        self.labels: list[str] = manifest.labels
        self.task: str = manifest.task
        self.problem = "single_label"
        self.batch_size = batch_size
        self.model = TransferkitForImageClassification.from_pretrained(self.run_dir / "model")
        apply_unmerged_adapter(self.model, self.run_dir)  # runs saved with --no-merge
        self.model.eval()
        pre = manifest.preprocess
        if pre is None:
            raise RunError(f"{self.run_dir}: its manifest has no preprocess block; is this an image run?")
        if pre.kind == "hf":
            from transformers import AutoImageProcessor

            self.preprocess = Preprocessor(
                processor=AutoImageProcessor.from_pretrained(self.run_dir / "model")
            )
        else:
            self.preprocess = Preprocessor(tuple(pre.size), pre.mean, pre.std)
        self.collator = ImageCollator()

    def logits(self, images) -> torch.Tensor:
        """(N, C) raw model outputs, in input order."""
        images = as_image_list(images)
        if not images:
            return torch.empty(0, self.model.config.num_labels)
        ds = ImageDataset(images, None, self.preprocess)
        return forward_in_order(
            lambda b: self.model(**b).logits, ds, self.collator, self.batch_size, precision=self.precision
        )

    def predict_proba(self, images) -> np.ndarray:
        """(N, C) class probabilities."""
        return probabilities(self.logits(images), self.problem).numpy()

    def predict(self, images) -> list[dict]:
        """Predicts each image (paths, PIL images or numpy arrays; see :func:`as_image_list`).

        Returns:
            One ``{"label", "score", "scores": {label: p}}`` per image, in input order.
        """
        out = []
        for row in self.predict_proba(images):
            best = int(np.argmax(row))
            scores = {name: float(p) for name, p in zip(self.labels, row, strict=True)}
            out.append({"label": self.labels[best], "score": float(row[best]), "scores": scores})
        return out

    def evaluate(
        self,
        path: str | Path,
        input_column: str | None = None,
        label_column: str | None = None,
        on_bad_image: str = "fail",
    ) -> dict:
        """Metrics on labelled images: an image folder, a CSV of path,label or an ``.npz`` file.

        Args:
            path: The folder, table or ``.npz`` file.
            input_column: A table's column of image paths (default ``path``).
            label_column: A table's label column (default ``label``).
            on_bad_image: ``fail`` on an unreadable image, or ``skip`` it with a warning.

        Raises:
            DataError: for a bad source or column, an unreadable image, or labels this model never saw.
        """

        frame = read_images(path, input_column or "path", label_column or "label")
        frame = check_images(frame, on_bad_image, str(path))
        names = [str(v) for v in frame["label"]]
        unseen = sorted(set(names) - set(self.labels))
        if unseen:
            raise DataError(
                f"{path}: labels {', '.join(map(repr, unseen[:5]))} were never seen by this model (it knows {', '.join(self.labels)})"
            )
        index = {n: i for i, n in enumerate(self.labels)}
        targets = np.array([index[n] for n in names], dtype=np.int64)
        return score(self.logits(frame["text"].tolist()), targets, self.problem, self.labels)

    def predict_file(self, path: str | Path, output: str | Path, input_column: str | None = None) -> Path:
        """Reads a CSV/TSV/JSONL/Parquet list of image paths (relative to it) in ``input_column`` (default
        ``path``); writes the same rows plus ``predicted_label``, ``score`` and ``p_<label>`` columns to a new
        file (never overwriting one; an input column named like one of them is an error)."""

        refuse_existing(output)
        frame = read_table(path)
        names = ["predicted_label", "score", *(f"p_{n}" for n in self.labels)]
        add_columns(frame, dict.fromkeys(names), path)  # a clash fails before the images are decoded
        refs = read_image_csv(Path(path), input_column or "path", None)["text"].tolist()
        preds = self.predict(refs)
        new = {"predicted_label": [p["label"] for p in preds], "score": [p["score"] for p in preds]}
        for name in self.labels:
            new[f"p_{name}"] = [p["scores"][name] for p in preds]
        return write_table(add_columns(frame, new, path), output)
