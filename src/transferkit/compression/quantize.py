"""Dynamic int8 quantization of an exported ONNX folder (onnxruntime ``quantize_dynamic``).

Why onnxruntime and not ``torch.ao``: measured on this 2-core AVX2 machine (no AVX-512/VNNI) on the
MiniLM-L6 classifier, one thread, 32 review snippets (see ``benchmarks/bench_compress.py``), onnxruntime
int8 was the faster of the two and its file about a quarter of fp32 (21 MB of 86 MB), because its dynamic
quantizer also quantizes the word-embedding table (``Gather``); ``torch.ao.quantization.quantize_dynamic``
only replaces ``nn.Linear`` (55 MB left, embeddings stay fp32) and its fbgemm kernels gained less
(batch 1: 75 -> 54 ms for torch.ao; 34-44 -> 24-28 ms for onnxruntime fp32 -> int8, on a busy machine).
The quantized graph is also the same servable ONNX folder as the fp32 export.

Weights are int8 per output channel; activations are quantized per batch at run time (dynamic), so no
calibration data is needed. ``reduce_range`` (7-bit weights, a guard against ``vpmaddubsw`` saturation on
pre-VNNI CPUs) was measured too: it doubled the logit error (max 0.17 vs 0.12) and ran slower, so it is off.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from transferkit.artifacts import EXPORT_MARKER, ONNX_FILE, read_export
from transferkit.utils.io import atomic_write_json

# what gets int8 weights: the matrix products (attention, feed-forward, head) and the embedding lookups
QUANTIZED_OPS = ["MatMul", "Gemm", "Gather"]


def quantize_onnx_file(source: Path, target: Path, per_channel: bool = True) -> None:
    """Writes the dynamic-int8 version of ONNX model ``source`` to ``target`` (per-channel int8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".pre.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(
        max(level, logging.WARNING)
    )  # the quantizer logs one INFO line per tensor on the root logger
    try:
        # constant folding and shape inference first, so every MatMul sees known weight shapes
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=False,
            op_types_to_quantize=QUANTIZED_OPS,
        )
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)


def quantize_export(source: str | Path, folder: Path) -> dict:
    """Copies the exported folder ``source`` into ``folder`` with an int8 ``model.onnx``.

    Args:
        source: A folder written by :func:`~transferkit.compression.export.export_run` (fp32).
        folder: An existing empty folder to fill.

    Returns:
        The new ``export.json`` content.
    """
    source = Path(source)
    meta = read_export(source)
    for item in source.iterdir():
        if item.name in (ONNX_FILE, EXPORT_MARKER, "README.md"):
            continue
        if item.is_dir():
            shutil.copytree(item, folder / item.name)
        else:
            shutil.copy(item, folder / item.name)
    quantize_onnx_file(source / meta.get("model_file", ONNX_FILE), folder / ONNX_FILE)
    meta = {**meta, "precision": "int8", "model_file": ONNX_FILE, "quantization": {
        "method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "int8", "per_channel": True,
        "reduce_range": False, "op_types": QUANTIZED_OPS,
    }}  # fmt: skip
    meta.pop("max_abs_diff", None)  # measured for fp32; int8 differs by design (the report measures it)
    atomic_write_json(folder / EXPORT_MARKER, meta)
    return json.loads((folder / EXPORT_MARKER).read_text())
