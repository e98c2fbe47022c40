"""Loading a finished text-classification run and predicting with it (``transferkit.load(RUN).predict([...])``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import transferkit.tasks.text_classification.model  # noqa: F401  (registers the model class with the auto classes)
from transferkit import hardware
from transferkit.artifacts import read_run
from transferkit.config import TrainingConfig
from transferkit.data import read_labelled
from transferkit.data.readers import read_table
from transferkit.data.targets import encode_targets
from transferkit.data.text import Collator
from transferkit.errors import DataError
from transferkit.evaluation.scoring import probabilities, score
from transferkit.inference import forward_in_order
from transferkit.predictors import (
    BasePredictor,
    add_columns,
    apply_unmerged_adapter,
    refuse_existing,
    write_table,
)
from transferkit.tasks.text_classification.data import TokenizedDataset


class Predictor(BasePredictor):
    """A loaded text-classification run: ``predict`` texts into labels with probabilities.

    Args:
        run_dir: A folder written by ``transferkit fit``.
        batch_size: Texts per forward pass.
    """

    def __init__(self, run_dir: str | Path, batch_size: int = 64):
        self.run_dir, manifest, self.metrics = read_run(run_dir)
        self.labels: list[str] = manifest.labels
        self.task: str = manifest.task
        self.problem: str = manifest.problem
        self.max_length: int = manifest.max_length or 256
        self.batch_size = batch_size
        # rows x longest text per forward pass: the same cap as evaluation during fit
        self.max_tokens = TrainingConfig.model_fields["eval_max_tokens"].default
        self.model = AutoModelForSequenceClassification.from_pretrained(self.run_dir / "model")
        apply_unmerged_adapter(self.model, self.run_dir)
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.run_dir / "model")
        self.collator = Collator(self.tokenizer)

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, C) raw model outputs, in input order."""
        texts = [str(t) for t in texts]
        if not texts:
            return torch.empty(0, self.model.config.num_labels)
        ds = TokenizedDataset(self.tokenizer, texts, None, self.max_length)
        model = self.forward_model()
        return forward_in_order(
            lambda b: model(**b).logits, ds, self.collator, self.batch_size, max_tokens=self.max_tokens,
            precision=self.precision,
        )  # fmt: skip

    def forward_model(self) -> torch.nn.Module:
        """``self.model`` at fp32; under bf16 / fp16 a copy whose matmul weights are cast once (autocast
        would cast them again on every batch: ~10% of a serving forward pass), made on first use and made
        again if ``model`` or ``precision`` changes."""
        name = getattr(self.precision, "name", self.precision) or "fp32"
        if name == "fp32":
            return self.model
        key = (name, id(self.model))
        if getattr(self, "_forward_key", None) != key:
            self._forward_copy = hardware.low_precision_copy(self.model, self.precision)
            self._forward_key = key
        return self._forward_copy

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) class probabilities (sigmoid per label for multi-label; the value for regression)."""
        return probabilities(self.logits(texts), self.problem).numpy()

    def predict(self, texts: Sequence[str] | str) -> list[dict]:
        """Predicts each text.

        Returns:
            One dict per text: ``{"label", "score", "scores": {label: p}}`` (single-label),
            ``{"labels": [...], "scores": {...}}`` (multi-label) or ``{"value": x}`` (regression).
        """
        if isinstance(texts, str):
            texts = [texts]
        probs = self.predict_proba(texts)
        out = []
        for row in probs:
            if self.problem == "regression":
                out.append({"value": float(row[0])})
                continue
            scores = {name: float(p) for name, p in zip(self.labels, row, strict=True)}
            if self.problem == "multi_label":
                out.append({"labels": [n for n, p in scores.items() if p >= 0.5], "scores": scores})
            else:
                best = int(np.argmax(row))
                out.append({"label": self.labels[best], "score": float(row[best]), "scores": scores})
        return out

    def evaluate(
        self,
        path: str | Path,
        input_column: str | None = None,
        label_column: str | None = None,
        separator: str = "|",
    ) -> dict:
        """Metrics on a labelled file (same keys as ``metrics.json``'s splits).

        Args:
            path: CSV/TSV/JSONL/Parquet file.
            input_column: The text column (default ``text``).
            label_column: The label column (default ``label``).
            separator: Between the labels of one multi-label cell.

        Raises:
            DataError: for a bad file or column, or labels this model never saw.
        """

        frame = read_labelled(path, input_column or "text", label_column or "label", self.problem, separator)
        if self.problem != "regression":
            seen = {lab for labs in frame["label"] for lab in (labs if isinstance(labs, list) else [labs])}
            unseen = sorted(seen - set(self.labels))
            if unseen:
                raise DataError(
                    f"{path}: labels {', '.join(map(repr, unseen[:5]))} were never seen by this model (it knows {', '.join(self.labels)}); check --label-column"
                )
        targets = encode_targets(frame, self.problem, self.labels)
        return score(self.logits(frame["text"].tolist()), targets, self.problem, self.labels)

    def predict_file(self, path: str | Path, output: str | Path, input_column: str | None = None) -> Path:
        """Reads CSV/TSV/JSONL/Parquet with texts in ``input_column`` (default ``text``); writes the same rows
        plus ``predicted_label``, ``score`` and ``p_<label>`` columns (``predicted_labels`` for multi-label,
        ``predicted_value`` for regression), never overwriting a file.

        Raises:
            DataError: for a bad file or column, an input column named like a prediction column, or an
                ``output`` that exists (also one that appears while the predictions run).
        """
        refuse_existing(output)
        column = input_column or "text"
        frame = read_table(path)
        if column not in frame.columns:
            raise DataError(
                f"{path}: no column {column!r} (columns: {', '.join(map(str, frame.columns))}); set --text-column"
            )
        names = self._prediction_columns()
        add_columns(frame, dict.fromkeys(names), path)  # a clash fails before the forward passes
        preds = self.predict(frame[column].astype(str).tolist())
        new: dict[str, list] = {}
        if self.problem == "regression":
            new["predicted_value"] = [p["value"] for p in preds]
        elif self.problem == "multi_label":
            new["predicted_labels"] = ["|".join(p["labels"]) for p in preds]
        else:
            new["predicted_label"] = [p["label"] for p in preds]
            new["score"] = [p["score"] for p in preds]
        for name in self.labels:
            new[f"p_{name}"] = [p["scores"][name] for p in preds]
        return write_table(add_columns(frame, new, path), output)

    def _prediction_columns(self) -> list[str]:
        """The columns :meth:`predict_file` adds, in order (an input column of the same name is an error)."""
        head = {"regression": ["predicted_value"], "multi_label": ["predicted_labels"]}
        return head.get(self.problem, ["predicted_label", "score"]) + [f"p_{n}" for n in self.labels]


__all__ = ["Predictor"]
