"""ONNX export of a run folder, and loading an exported folder back as a predictor.

An exported folder is self-describing and servable::

    EXPORT/export.json     marker: format, task, precision (fp32 / int8), model inputs/outputs, opset,
                           preprocessing (max_length, pooling, problem), the source run, the verified
                           max |onnx - torch| difference
    EXPORT/model.onnx      the graph (dynamic batch and sequence axes)
    EXPORT/tokenizer/      the run's tokenizer (Hugging Face format)
    EXPORT/labels.json     the run's manifest, copied as it is (transferkit.manifest)
    EXPORT/metrics.json    copied from the run (what the PyTorch model measured)
    EXPORT/config.yaml     copied from the run (the data it was trained on, for ``compress``)
    EXPORT/README.md       how to load it

``transferkit.load(EXPORT)`` sees ``export.json`` and returns the task's onnxruntime predictor, which has
the same interface as the PyTorch one (``predict``, ``predict_proba``, ``evaluate``, ``predict_file``).

Tasks plug in through their spec's ``onnx_exporter`` (:mod:`transferkit.tasks.registry`): a module defining
``export_onnx(run_dir, folder, opset) -> dict`` (writes ``model.onnx`` and whatever preprocessing files the
task needs into ``folder``; returns the ``export.json`` fields it adds) and
``load_onnx(folder, batch_size) -> predictor``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from transferkit.artifacts import EXPORT_MARKER, ONNX_FILE, is_exported, read_export, read_run
from transferkit.errors import RunError
from transferkit.manifest import MANIFEST_FILE, RunManifest
from transferkit.tasks import TASKS, task_spec
from transferkit.utils.io import (
    atomic_write_json,
    atomic_write_text,
    move_into_place,
    publish_folder,
)

COPIED = (MANIFEST_FILE, "metrics.json", "config.yaml")
_NEVER_OVERWRITTEN = "already exists; choose a new --output (folders are never overwritten)"


def exporter(task: str) -> ModuleType:
    """The export module of ``task``.

    Raises:
        RunError: for a task that has no ONNX export yet.
    """

    module = TASKS.get(task).onnx_exporter
    if module is None:
        exportable = ", ".join(e.name for e in TASKS if e.obj.onnx_exporter)
        raise RunError(
            f"task {task!r} has no ONNX export yet (exportable: {exportable}); serve the run folder itself"
        )
    return importlib.import_module(module)


def free_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ... : the first that does not exist."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def claim_output(output: str | Path | None, default: Path) -> Path:
    """The output folder to create: ``output`` if given (refused if it exists), else a free default name."""
    if output is None:
        return free_folder(default)
    output = Path(output)
    if output.exists():
        raise RunError(f"{output}: {_NEVER_OVERWRITTEN}")
    return output


def publish(tmp: Path, output: Path) -> Path:
    """Renames a finished temporary folder to ``output`` (atomic on one file system; never overwrites)."""
    try:
        return move_into_place(tmp, output, if_exists="error")
    except FileExistsError:
        raise RunError(f"{output}: {_NEVER_OVERWRITTEN}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def staging_dir(output: Path) -> Path:
    """A temporary folder beside ``output`` (same file system, so :func:`publish` is one rename).

    Its name carries the process id; staging folders for the same output left by a process that no longer
    runs (a killed ``export`` or ``compress``) are removed first.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    for old in output.parent.glob(f".{output.name}.*.partial"):
        pid = old.name[len(output.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(
        tempfile.mkdtemp(prefix=f".{output.name}.{os.getpid()}.", suffix=".partial", dir=output.parent)
    )


def export_into(run_dir: Path, folder: Path, manifest: RunManifest, opset: int = 17) -> dict:
    """Writes the ONNX export of ``run_dir`` into the existing, empty ``folder`` (no marker checks)."""
    module = exporter(manifest.task)
    for name in COPIED:
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, folder / name)
    fields = module.export_onnx(run_dir, folder, opset)
    meta = {
        "format": "onnx",
        "task": manifest.task,
        "problem": manifest.problem,
        "labels": manifest.labels,
        "precision": "fp32",
        "model_file": ONNX_FILE,
        "opset": opset,
        "source_run": str(run_dir),
        **fields,
    }
    atomic_write_json(folder / EXPORT_MARKER, meta)
    return meta


def write_readme(folder: Path, meta: dict, final: Path) -> None:
    text = f"""# {final.name}

ONNX export ({meta["precision"]}) of the transferkit run `{meta["source_run"]}`; task {meta["task"]}.

```python
import transferkit
model = transferkit.load("{final}")   # onnxruntime, no PyTorch forward pass
model.predict(["a new example"])
```

`transferkit predict {final} --text "a new example"` and `transferkit serve {final}` work the same way.
Inputs of `{meta["model_file"]}`: {", ".join(meta.get("inputs", []))}; output: {", ".join(meta.get("outputs", []))}.
"""
    atomic_write_text(folder / "README.md", text)


def export_run(run_dir: str | Path, output: str | Path | None = None, opset: int = 17) -> Path:
    """Exports a finished run to an ONNX folder that ``transferkit.load`` and ``transferkit serve`` accept.

    Args:
        run_dir: A folder written by ``transferkit fit``.
        output: The folder to create (refused if it exists); default ``<run>-onnx`` (``-2``, ``-3`` ... if taken).
        opset: ONNX opset of the graph.

    Returns:
        The new folder. It is written to a temporary folder beside it and renamed when complete.

    Raises:
        RunError: for a missing or unfinished run, an existing ``output``, or a task without ONNX export.

    Example:
        >>> folder = export_run("runs/rotten_tomatoes-full-20261123-101500")  # doctest: +SKIP
        >>> transferkit.load(folder).predict(["an instant classic"])  # doctest: +SKIP
    """
    run_dir, manifest, _ = read_run(run_dir)
    if is_exported(run_dir):
        raise RunError(f"{run_dir}: already an ONNX export; give the run folder that `transferkit fit` wrote")
    exporter(manifest.task)  # clear error before any work
    final = claim_output(output, run_dir.with_name(f"{run_dir.name}-onnx"))
    try:
        with publish_folder(final, if_exists="error", staging=staging_dir(final)) as tmp:
            meta = export_into(run_dir, tmp, manifest, opset)
            write_readme(tmp, meta, final)
    except FileExistsError:  # created by someone else while this export ran
        raise RunError(f"{final}: {_NEVER_OVERWRITTEN}") from None
    return final


def load_exported(folder: str | Path, batch_size: int = 64):
    """The onnxruntime predictor of an exported folder (what ``transferkit.load`` returns for one)."""
    info = read_export(folder)
    return exporter(info["task"]).load_onnx(folder, batch_size)


def load_folder(run_dir: str | Path, batch_size: int = 64, precision: str = "run"):
    """The predictor of a run folder, or of a folder written by ``transferkit export`` / ``compress``.

    Exported folders (``export.json``) get their task's onnxruntime predictor (its precision is the exported
    model's); run folders the predictor their task's spec loads, at ``precision``: ``run`` (the precision the
    run trained and evaluated at, so predictions match its metrics), or auto / fp32 / bf16 / fp16 (see
    :func:`transferkit.hardware.resolve_precision`). :func:`transferkit.load` is this function.
    """
    # torch, numpy load on first use, not when export is imported
    from transferkit import hardware

    if is_exported(run_dir):
        return load_exported(run_dir, batch_size)
    _, manifest, _ = read_run(run_dir)
    predictor = task_spec(manifest.task).load(run_dir, batch_size)
    if precision == "run":
        predictor.precision = hardware.Precision(
            manifest.precision, "run", "the precision the run trained at"
        )
    else:
        predictor.precision = hardware.resolve_precision(precision)
    return predictor
