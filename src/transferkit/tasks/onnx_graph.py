"""Token ids -> logits graphs in ONNX: written, opened in onnxruntime and checked against PyTorch.

Shared by the ``onnx.py`` of every task that exports (text classification: ``(B, C)`` logits; token
classification: ``(B, T, C)``); the exported folder's ``export.json`` and ``model.onnx`` are described in
:mod:`transferkit.artifacts`.

Exporter: TorchScript-based ``torch.onnx.export(..., dynamo=False)``. The dynamo exporter needs
``onnxscript`` and gives nothing more for a static encoder graph; the legacy exporter works offline with
torch 2.x and traces these models exactly (every export is verified against PyTorch, see ``max_abs_diff``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

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
        return self.model(**dict(zip(self.names, tensors, strict=True))).logits  # (B, C) or (B, T, C)


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
