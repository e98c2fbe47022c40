"""Make a finished run smaller and faster, and measure what that cost.

* :func:`~transferkit.compression.export.export_run`: ONNX export (``transferkit export``), servable
  through onnxruntime with the same predictor interface.
* :func:`~transferkit.compression.compress.compress_run`: distillation into a smaller student, magnitude or
  structured pruning (with an optional recovery fine-tune) and dynamic int8 quantization
  (``transferkit compress``), with a before/after report of size, latency and accuracy.

Which tasks export: the `onnx_exporter` of their task spec (:mod:`transferkit.tasks.registry`).
"""

from __future__ import annotations

__all__ = ["compress_run", "export_run", "load_exported"]


def __getattr__(name: str):
    # Lazy: onnx / onnxruntime load only when used.
    if name in ("export_run", "load_exported"):
        from transferkit.compression import export

        return getattr(export, name)
    if name == "compress_run":
        from transferkit.compression.compress import compress_run

        return compress_run
    raise AttributeError(f"module 'transferkit.compression' has no attribute {name!r}")
