"""Text classification to ONNX (and back): the exporter and the onnxruntime predictor of the task.

The graph is the whole ``TransferkitForSequenceClassification`` (encoder, pooling, head): token ids in,
``(B, C)`` logits out, with dynamic batch and sequence axes. Tokenization stays in Python (the run's
Hugging Face tokenizer, saved beside the graph), exactly as the PyTorch predictor does it. The graph is
written and verified against PyTorch by :mod:`transferkit.tasks.onnx_graph`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from transferkit.artifacts import ONNX_FILE, read_export
from transferkit.data.text import Collator
from transferkit.inference import forward_in_order
from transferkit.manifest import manifest_path, read_manifest, read_run_json
from transferkit.tasks.onnx_graph import TOKENIZER_DIR, max_abs_diff, session, write_onnx_model
from transferkit.tasks.text_classification.data import TokenizedDataset
from transferkit.tasks.text_classification.predictor import Predictor


def export_onnx(run_dir: Path, folder: Path, opset: int = 17) -> dict:
    """Exports ``RUN/model`` to ``folder/model.onnx`` and its tokenizer to ``folder/tokenizer/``."""

    import transferkit.tasks.text_classification.model  # noqa: F401  (registers the model class with the auto classes)

    # eager attention: one plain MatMul/Softmax graph that onnxruntime fuses and quantizes well
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model", attn_implementation="eager")
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    names = write_onnx_model(model, tokenizer, folder / ONNX_FILE, opset)
    tokenizer.save_pretrained(folder / TOKENIZER_DIR)
    manifest = read_manifest(run_dir)
    return {
        "inputs": names,
        "outputs": ["logits"],
        "max_length": manifest.max_length or 256,
        "pooling": (manifest.text.pooling if manifest.text else None) or model.config.pooling,
        "num_labels": model.config.num_labels,
        "max_abs_diff": max_abs_diff(model, tokenizer, folder / ONNX_FILE, names),
        "tokenizer": TOKENIZER_DIR,
    }


class OnnxTextClassifier(Predictor):
    """The PyTorch :class:`~transferkit.tasks.text_classification.predictor.Predictor`'s interface over an onnxruntime session.

    ``predict``, ``predict_proba``, ``evaluate`` and ``predict_file`` are inherited: only the forward pass
    (``logits``) differs.

    Args:
        folder: A folder written by ``transferkit export`` or ``transferkit compress --int8``.
        batch_size: Texts per forward pass.
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """

    def __init__(self, folder: str | Path, batch_size: int = 64, threads: int | None = None):

        self.run_dir = Path(folder)
        self.export = read_export(folder)
        # an export without the run's manifest still names its labels in export.json
        has_manifest = manifest_path(self.run_dir).is_file()
        labels = read_manifest(self.run_dir).labels if has_manifest else self.export.get("labels", [])
        metrics_file = self.run_dir / "metrics.json"
        self.metrics = read_run_json(metrics_file) if metrics_file.is_file() else {}
        self.labels = list(labels)
        self.task = self.export["task"]
        self.problem = self.export.get("problem", "single_label")
        self.max_length = self.export.get("max_length", 256)
        self.batch_size = batch_size
        self.precision = self.export.get("precision", "fp32")
        self.inputs = list(self.export["inputs"])
        self.num_labels = int(self.export.get("num_labels", max(len(self.labels), 1)))
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.run_dir / self.export.get("tokenizer", TOKENIZER_DIR)
        )
        self.collator = Collator(self.tokenizer)
        self.session = session(self.run_dir / self.export.get("model_file", ONNX_FILE), threads)

    def _run(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds = {n: batch[n].numpy().astype(np.int64) for n in self.inputs}
        return torch.from_numpy(self.session.run(None, feeds)[0])  # (B, C)

    def logits(self, texts) -> torch.Tensor:
        """(N, C) raw model outputs, in input order."""

        texts = [str(t) for t in texts]
        if not texts:
            return torch.empty(0, self.num_labels)
        ds = TokenizedDataset(self.tokenizer, texts, None, self.max_length)
        return forward_in_order(self._run, ds, self.collator, self.batch_size)


def load_onnx(folder: str | Path, batch_size: int = 64) -> OnnxTextClassifier:
    """Loads an exported text-classification folder (called by ``transferkit.load``)."""
    return OnnxTextClassifier(folder, batch_size)
