"""``transferkit compress``: distil -> prune -> int8, each stage measured, the last one written as a new folder.

Stages run in that order (each optional, at least one): distillation into a smaller student, pruning of
the encoder's linear layers (with an optional recovery fine-tune), ONNX export + dynamic int8 quantization.
The output is a run folder (distil / prune only: PyTorch, like ``fit`` writes) or an ONNX folder (``int8``);
both load with ``transferkit.load`` and serve with ``transferkit serve``. ``report.json`` in it holds one
row per stage: model size, median latency at batch 1 and 32, accuracy and macro-F1 on the run's test split
(or ``data``).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from transferkit import artifacts
from transferkit.artifacts import is_exported, read_run
from transferkit.compression.export import (
    claim_output,
    export_into,
    exporter,
    publish,
    staging_dir,
    write_readme,
)
from transferkit.compression.export import load_folder as load
from transferkit.compression.quantize import quantize_export
from transferkit.compression.report import (
    REPORT_FILE,
    evaluation_frame,
    format_table,
    load_run_splits,
    measure,
)
from transferkit.config import load_config
from transferkit.errors import ConfigError, RunError
from transferkit.manifest import MANIFEST_FILE, RunManifest, read_manifest
from transferkit.tasks import TASKS
from transferkit.utils.io import atomic_write_json

log = logging.getLogger("transferkit")


@dataclass
class CompressResult:
    """The new folder, its report rows (first: the original run) and the printable table."""

    folder: Path
    rows: list[dict]
    table: str


def _check(
    run_dir: Path, manifest: RunManifest, int8: bool, prune: float | None, distil_to: str | None
) -> None:
    if not (int8 or prune or distil_to):
        raise ConfigError(
            "compress: nothing to do; give --int8, --prune FRACTION and/or --distil-to BACKBONE"
        )
    if is_exported(run_dir):
        raise RunError(f"{run_dir}: an ONNX export; give the run folder that `transferkit fit` wrote")
    task = manifest.task

    if not TASKS.get(task).compressible:
        supported = ", ".join(e.name for e in TASKS if e.obj.compressible)
        raise RunError(f"task {task!r} cannot be compressed yet (supported: {supported})")
    if int8:
        exporter(task)
    if prune is not None and not 0.0 < prune < 1.0:
        raise ConfigError(f"--prune must be a fraction between 0 and 1 (e.g. 0.3), not {prune}")


def _default_name(run_dir: Path, int8: bool, prune: float | None, distil_to: str | None, layers) -> Path:
    parts = []
    if distil_to:
        parts.append(f"distil-{Path(distil_to).name}" + (f"-l{layers}" if layers else ""))
    if prune:
        parts.append(f"pruned{round(prune * 100)}")
    if int8:
        parts.append("int8")
    return run_dir.with_name(f"{run_dir.name}-{'-'.join(parts)}")


def _prune_stage(
    source: Path, folder: Path, amount: float, method: str, recover_epochs: float, splits
) -> dict:
    """Writes a pruned copy of run ``source`` to ``folder``; returns facts for the report."""
    # transformers, PIL, huggingface_hub ... load on first use, not when compress is imported
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # torch, transformers, peft ... load on first use, not when compress is imported
    from transferkit.compression.finetune import finetune

    # torch load on first use, not when compress is imported
    from transferkit.compression.prune import apply_pruning, make_permanent, sparsity

    # sklearn, scipy, PIL ... load on first use, not when compress is imported
    from transferkit.data.targets import encode_targets

    model = AutoModelForSequenceClassification.from_pretrained(source / "model")
    tokenizer = AutoTokenizer.from_pretrained(source / "model")
    layers = apply_pruning(model, amount, method)
    if recover_epochs:
        cfg = load_config(source / "config.yaml")
        labels = read_manifest(source).labels
        p = cfg.task.problem
        finetune(
            model, tokenizer, cfg, splits.train["text"].tolist(), encode_targets(splits.train, p, labels),
            splits.validation["text"].tolist(), encode_targets(splits.validation, p, labels), labels,
            recover_epochs, log_dir=folder / "logs",
        )  # fmt: skip
    make_permanent(layers)
    model.eval()
    folder.mkdir(exist_ok=True)
    for name in ("config.yaml", MANIFEST_FILE, "metrics.json", "README.md"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    artifacts.save_model(model, tokenizer, folder)
    return {"sparsity": sparsity(model), "prune_method": method, "recover_epochs": recover_epochs}


def _int8_stage(current: Path, work: Path, final: Path, frame, repeats: int, rows: list) -> Path:
    """ONNX export of ``current`` and its int8 quantization (both measured into ``rows``); the int8 folder."""

    log.info("exporting to ONNX and quantizing to int8")
    _, current_manifest, _ = read_run(current)
    (work / "onnx").mkdir()
    export_into(current, work / "onnx", current_manifest)
    rows.append(measure(load(work / "onnx"), frame, "ONNX fp32 (onnxruntime)", repeats))
    (work / "int8").mkdir()
    meta = quantize_export(work / "onnx", work / "int8")
    write_readme(work / "int8", meta, final)
    rows.append(measure(load(work / "int8"), frame, "ONNX int8 (onnxruntime)", repeats))
    return work / "int8"


def _record_compression(folder: Path, run_dir: Path, evaluated_on: str, rows: list, own_test: bool) -> None:
    """``metrics.json`` of the compressed folder gains ``compression`` (before / after), and its ``test``
    scores when they were measured on the run's own test split."""
    path = folder / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["compression"] = {"source_run": str(run_dir), "evaluated_on": evaluated_on,
                              "before": rows[0]["metrics"], "after": rows[-1]["metrics"]}  # fmt: skip
    if own_test:
        metrics["test"] = {**metrics.get("test", {}), **rows[-1]["metrics"]}
    atomic_write_json(path, metrics)


def compress_run(
    run_dir: str | Path,
    *,
    int8: bool = False,
    prune: float | None = None,
    prune_method: str = "magnitude",
    recover_epochs: float = 0.0,
    distil_to: str | None = None,
    distil_epochs: float = 2.0,
    student_layers: int | None = None,
    data: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    output: str | Path | None = None,
    repeats: int = 10,
) -> CompressResult:
    """Compresses a finished run and reports what it cost.

    Args:
        run_dir: A folder written by ``transferkit fit``.
        int8: Export to ONNX and quantize weights to int8 (onnxruntime dynamic quantization).
        prune: Fraction of each encoder linear layer to zero (e.g. 0.3).
        prune_method: "magnitude" (single weights) or "structured" (whole output neurons).
        recover_epochs: Fine-tune for this many epochs after pruning (masks kept), 0 for none.
        distil_to: Student backbone to distil the run into (registered name, folder or hub id).
        distil_epochs: Distillation epochs.
        student_layers: Keep only this many blocks of the student (evenly spaced).
        data: Labelled file to measure on (default: the run's test split, reloaded from its config).
        text_column / label_column: Columns of ``data``.
        output: Folder to create (refused if it exists); default ``<run>-<stages>``.
        repeats: Timed calls per latency measurement.

    Returns:
        The new folder, the report rows and the printed table (also in ``report.json``).

    Raises:
        TransferkitError: nothing to do, unknown run, unsupported task, existing output, bad data.

    Example:
        >>> res = compress_run("runs/rt-full", int8=True)  # doctest: +SKIP
        >>> print(res.table)  # doctest: +SKIP
    """

    run_dir, manifest, source_metrics = read_run(run_dir)
    _check(run_dir, manifest, int8, prune, distil_to)
    final = claim_output(output, _default_name(run_dir, int8, prune, distil_to, student_layers))
    problem = manifest.problem
    need_train = bool(distil_to or (prune and recover_epochs))
    splits = load_run_splits(run_dir) if need_train or data is None else None
    frame, evaluated_on = (splits.test, "test split of the run's data") if data is None else evaluation_frame(
        run_dir, problem, data, text_column, label_column)  # fmt: skip
    # every stage is written under one process-named staging folder; only the last stage is published
    work = staging_dir(final)
    try:
        rows = [measure(load(run_dir), frame, "original (PyTorch fp32)", repeats)]
        current = run_dir
        if distil_to:
            from transferkit.compression.distil import distil_run

            log.info("distilling into %s", distil_to)
            cfg = load_config(run_dir / "config.yaml")
            distil_run(
                run_dir,
                work / "distilled",
                distil_to,
                splits,
                cfg,
                distil_epochs,
                student_layers=student_layers,
            )
            current = work / "distilled"
            rows.append(measure(load(current), frame, f"distilled into {distil_to}", repeats))
        if prune:
            log.info("pruning %.0f%% (%s)", prune * 100, prune_method)
            facts = _prune_stage(current, work / "pruned", prune, prune_method, recover_epochs, splits)
            current = work / "pruned"
            rows.append(measure(load(current), frame, f"pruned {prune:.0%} ({prune_method})", repeats, facts))
        if int8:
            current = _int8_stage(current, work, final, frame, repeats, rows)
        table = format_table(rows)
        report = {
            "source_run": str(run_dir),
            "evaluated_on": evaluated_on,
            "num_examples": len(frame),
            "rows": rows,
        }
        atomic_write_json(current / REPORT_FILE, report)
        # the test scores are this folder's when measured on the run's own test split
        own_test = data is None and problem == source_metrics.get("problem", problem)
        _record_compression(current, run_dir, evaluated_on, rows, own_test)
        (current / "report.txt").write_text(table + "\n")
        publish(current, final)
        for row in rows[1:]:
            row["folder"] = str(final) if row is rows[-1] else "(intermediate, not kept)"
        atomic_write_json(final / REPORT_FILE, {**report, "rows": rows})
        return CompressResult(final, rows, table)
    finally:
        shutil.rmtree(work, ignore_errors=True)
