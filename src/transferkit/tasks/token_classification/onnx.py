"""Token classification (NER) to ONNX (and back): the exporter and the onnxruntime predictor of the task.

The graph is the saved token model (``RUN/model``: the family's ``*ForTokenClassification`` or transferkit's
own class): token ids in, ``(B, T, C)`` logits out, batch and sequence axes dynamic. Everything around it
stays in Python exactly as in :class:`~transferkit.tasks.token_classification.predictor.TokenPredictor`: word splitting, sub-word
windows of ``max_length`` with ``stride`` overlap, first-sub-token alignment, merging windows back and span
decoding. Only the forward pass runs in onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from transferkit.artifacts import ONNX_FILE, read_export
from transferkit.manifest import TokenFields, read_manifest, read_run_json
from transferkit.tasks.onnx_graph import TOKENIZER_DIR, max_abs_diff, session, write_onnx_model
from transferkit.tasks.token_classification.data import TokenCollator
from transferkit.tasks.token_classification.model import load_token_model
from transferkit.tasks.token_classification.predictor import TokenPredictor, token_settings


def export_onnx(run_dir: Path, folder: Path, opset: int = 17) -> dict:
    """Exports ``RUN/model`` to ``folder/model.onnx`` and its tokenizer to ``folder/tokenizer/``."""

    model = load_token_model(run_dir / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    names = write_onnx_model(model, tokenizer, folder / ONNX_FILE, opset, per_token=True)
    tokenizer.save_pretrained(folder / TOKENIZER_DIR)
    manifest = read_manifest(run_dir)
    tokens = manifest.tokens or TokenFields()
    return {
        "inputs": names,
        "outputs": ["logits"],
        "max_length": manifest.max_length or 256,
        "stride": tokens.stride,
        "scheme": tokens.scheme,
        "num_labels": model.config.num_labels,
        "max_abs_diff": max_abs_diff(model, tokenizer, folder / ONNX_FILE, names),
        "tokenizer": TOKENIZER_DIR,
    }


class OnnxTokenClassifier(TokenPredictor):
    """:class:`~transferkit.tasks.token_classification.predictor.TokenPredictor` (``predict``, ``tag``, ``evaluate``, ...) over an
    onnxruntime session.

    Args:
        folder: A folder written by ``transferkit export`` from a token-classification run.
        batch_size: Windows per forward pass.
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """

    def __init__(self, folder: str | Path, batch_size: int = 64, threads: int | None = None):

        self.run_dir = Path(folder)
        self.export = read_export(folder)
        manifest = read_manifest(self.run_dir)
        metrics_file = self.run_dir / "metrics.json"
        self.metrics = read_run_json(metrics_file) if metrics_file.is_file() else {}
        self.labels = list(manifest.labels)
        self.scheme = self.export.get("scheme", (manifest.tokens or TokenFields()).scheme)
        self.max_length = self.export.get("max_length", 256)
        self.stride = self.export.get("stride", 32)
        self.batch_size = batch_size
        self.precision = self.export.get("precision", "fp32")
        self.inputs = list(self.export["inputs"])
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.run_dir / self.export.get("tokenizer", TOKENIZER_DIR)
        )
        self.collator = TokenCollator(self.tokenizer)
        self.session = session(self.run_dir / self.export.get("model_file", ONNX_FILE), threads)
        self.settings = token_settings(self.run_dir)

    def window_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds = {n: batch[n].numpy().astype(np.int64) for n in self.inputs}
        return torch.from_numpy(self.session.run(None, feeds)[0])  # (B, T, C)


def load_onnx(folder: str | Path, batch_size: int = 64) -> OnnxTokenClassifier:
    """Loads an exported token-classification folder (called by ``transferkit.load``)."""
    return OnnxTokenClassifier(folder, batch_size)
