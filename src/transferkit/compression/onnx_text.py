"""Text classification to ONNX (and back): the exporter and the onnxruntime predictor of the task.

The graph is the whole ``TransferkitForSequenceClassification`` (encoder, pooling, head): token ids in,
``(B, C)`` logits out, with dynamic batch and sequence axes. Tokenization stays in Python (the run's
Hugging Face tokenizer, saved beside the graph), exactly as the PyTorch predictor does it.

Exporter: TorchScript-based ``torch.onnx.export(..., dynamo=False)``. The dynamo exporter needs
``onnxscript`` and gives nothing more for a static encoder graph; the legacy exporter works offline with
torch 2.x and traces this model exactly (the export is verified against PyTorch, see ``max_abs_diff``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from transferkit.compression.export import ONNX_FILE, read_export
from transferkit.manifest import manifest_path, read_manifest, read_run_json
from transferkit.predictor import Predictor

TOKENIZER_DIR = "tokenizer"
VERIFY_TEXTS = [
    "a short one",
    "a somewhat longer example sentence, with punctuation, to check padding and pooling",
    "ok",
]
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Logits(torch.nn.Module):
    """Positional inputs -> logits tensor (the exporter wants tensors in, a tensor out)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors, strict=True))).logits  # (B, C)


def write_onnx_model(
    model: torch.nn.Module, tokenizer, path: Path, opset: int = 17, per_token: bool = False
) -> list[str]:
    """Writes ``model`` (token ids -> logits) as ONNX to ``path``; returns the input names.

    ``model`` must be in eval mode: dropout would otherwise be traced into the graph. ``per_token``: the logits
    are ``(B, T, C)`` (token classification), with a dynamic sequence axis too.
    """
    enc = tokenizer(VERIFY_TEXTS[:2], padding=True, return_tensors="pt")
    names = [k for k in MODEL_INPUTS if k in enc]
    wrapper = _Logits(model.eval(), names).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch", 1: "sequence"} if per_token else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            wrapper,
            tuple(enc[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    return names


def session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session with ``threads`` intra-op threads (default: torch's thread count, so
    PyTorch and ONNX timings compare like with like)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_diff(model: torch.nn.Module, tokenizer, path: Path, names: list[str]) -> float:
    """Largest |onnx - torch| logit difference on a few padded texts of different lengths."""
    enc = tokenizer(VERIFY_TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**{n: enc[n] for n in names}).logits.numpy()
    out = session(path).run(None, {n: enc[n].numpy().astype(np.int64) for n in names})[0]
    return float(np.abs(out - ref).max())


def export_onnx(run_dir: Path, folder: Path, opset: int = 17) -> dict:
    """Exports ``RUN/model`` to ``folder/model.onnx`` and its tokenizer to ``folder/tokenizer/``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from transferkit import modeling  # noqa: F401  (registers the model class with the auto classes)

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
    """The PyTorch :class:`~transferkit.predictor.Predictor`'s interface over an onnxruntime session.

    ``predict``, ``predict_proba``, ``evaluate`` and ``predict_file`` are inherited: only the forward pass
    (``logits``) differs.

    Args:
        folder: A folder written by ``transferkit export`` or ``transferkit compress --int8``.
        batch_size: Texts per forward pass.
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """

    def __init__(self, folder: str | Path, batch_size: int = 64, threads: int | None = None):
        from transformers import AutoTokenizer

        from transferkit.data.text import Collator

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
        from transferkit.data.text import TokenizedDataset
        from transferkit.inference import forward_in_order

        texts = [str(t) for t in texts]
        if not texts:
            return torch.empty(0, self.num_labels)
        ds = TokenizedDataset(self.tokenizer, texts, None, self.max_length)
        return forward_in_order(self._run, ds, self.collator, self.batch_size)


def load_onnx(folder: str | Path, batch_size: int = 64) -> OnnxTextClassifier:
    """Loads an exported text-classification folder (called by ``transferkit.load``)."""
    return OnnxTextClassifier(folder, batch_size)
