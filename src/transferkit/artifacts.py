"""Run folders: created once, never overwritten, every file written atomically.

Layout of ``RUN/``::

    config.yaml              the resolved configuration
    metrics.json             {"test": {...}, "validation": {...}, "pretrained_baseline": {...}, ...}
    labels.json              the run manifest (transferkit.manifest): task, problem, labels, per-task fields
    confusion_matrix.json/.png, training_curves.png
    logs/train_log.jsonl, logs/tensorboard/
    model/                   Hugging Face format: config.json, model.safetensors, tokenizer, modeling_transferkit.py
    README.md                the model card

An ONNX folder written from a run (``transferkit export`` / ``compress --int8``, see
:mod:`transferkit.compression.export`) holds ``export.json`` (:data:`EXPORT_MARKER`) and ``model.onnx``
beside the run's manifest and metrics; :func:`read_export` reads it for every task's onnxruntime predictor.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from transferkit.config import RunConfig
from transferkit.errors import RunError
from transferkit.manifest import MANIFEST_FILE, RunManifest, read_manifest, read_run_json
from transferkit.utils.io import (
    atomic_write_json,
    atomic_write_text,
    publish_folder,
    remove_leftovers,
)

log = logging.getLogger("transferkit")

MODELING_FILE = Path(__file__).parent / "remote_code" / "modeling_transferkit.py"
AUTO_MAP = {
    "AutoConfig": "modeling_transferkit.TransferkitConfig",
    "AutoModelForSequenceClassification": "modeling_transferkit.TransferkitForSequenceClassification",
}
EXPORT_MARKER = "export.json"  # marks an exported (ONNX) folder: format, task, precision, inputs, ...
ONNX_FILE = "model.onnx"


def default_run_dir(cfg: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<data>-<strategy>-<YYYYmmdd-HHMMSS>``, with a counter if that already exists."""
    data = cfg.data.dataset or Path(cfg.data.train or "data").stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{data}-{cfg.strategy.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    path, n = Path(root) / stem, 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stem}-{n}"
    return path


def create_run_dir(path: str | Path) -> Path:
    """Creates the run folder; refuses one that already exists (nothing the user had is overwritten)."""
    path = Path(path)
    if path.exists():
        raise RunError(f"{path}: already exists; choose a new --output (runs are never overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise RunError(
            f"{path}: already exists; choose a new --output (runs are never overwritten)"
        ) from None
    return path


def open_run(cfg: RunConfig, accelerator, resume: bool) -> Path:
    """The run folder of ``cfg`` (``output.dir`` or a fresh default name).

    A new run's main process creates it (never over an existing one) and saves the resolved config; a resumed
    run reuses it, less the temporary files and ``.partial`` folders the kill cut short. Every process waits
    until it is ready.
    """
    run_dir = Path(cfg.output.dir) if cfg.output.dir else default_run_dir(cfg)
    if accelerator.is_main_process and not resume:
        create_run_dir(run_dir)
        save_config(cfg, run_dir)
    elif accelerator.is_main_process:
        for path in remove_leftovers(run_dir):
            log.info(f"removed {path}: a write cut short by the interruption")
    accelerator.wait_for_everyone()
    return run_dir


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    """Writes the resolved configuration as YAML."""
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def save_model(model, tokenizer, run_dir: Path) -> Path:
    """Saves the model in Hugging Face format, loadable without transferkit.

    Written to ``model.partial/`` and renamed to ``model/`` only once complete (replacing the ``model/`` of
    an earlier, interrupted save of a resumed run).
    """
    final = run_dir / "model"
    model.config.auto_map = dict(AUTO_MAP)
    with publish_folder(final) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.copy(MODELING_FILE, tmp / MODELING_FILE.name)
    return final


def read_run(run_dir: str | Path) -> tuple[Path, RunManifest, dict]:
    """Checks a run folder and returns ``(path, its manifest, metrics.json)``.

    Raises:
        RunError: if the folder does not exist, holds no finished model (a PyTorch ``model/`` or an
            ONNX export's ``export.json``) or its manifest (``labels.json``) is invalid.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path}: no such run folder; give the folder `transferkit fit` wrote (e.g. runs/...)")
    exported = is_exported(path)  # an ONNX folder (transferkit export) keeps labels/metrics
    if not ((path / "model" / "config.json").is_file() or exported) or not (path / MANIFEST_FILE).is_file():
        raise RunError(
            f"{path}: not a finished run (no model/ or {MANIFEST_FILE}); was training interrupted?"
        )
    model = path / "model"
    listed = [
        model,
        *(model.iterdir() if model.is_dir() else []),
        *(p for p in path.iterdir() if p.is_file()),
    ]
    escaped = outside(path, [p.relative_to(path) for p in listed])
    if escaped:  # a symlink out of the folder: a shared run folder must not read other files of this machine
        raise RunError(
            f"{path}: {escaped[0]} links outside the run folder; copy the file in instead of linking"
        )
    manifest = read_manifest(path)
    metrics_file = path / "metrics.json"
    metrics = read_run_json(metrics_file) if metrics_file.is_file() else {}
    return path, manifest, metrics


def is_exported(folder: str | Path) -> bool:
    """True for a folder written by ``transferkit export`` (it holds ``export.json``)."""
    return (Path(folder) / EXPORT_MARKER).is_file()


def read_export(folder: str | Path) -> dict:
    """The ``export.json`` of an exported folder.

    Raises:
        RunError: if the folder is not an export or its model file is missing.
    """
    folder = Path(folder)
    if not is_exported(folder):
        raise RunError(
            f"{folder}: not an exported folder (no {EXPORT_MARKER}); run `transferkit export` first"
        )
    info = read_run_json(folder / EXPORT_MARKER)
    name = info.get("model_file", ONNX_FILE)
    if not isinstance(name, str) or not name or outside(folder, [name]):
        raise RunError(
            f"{folder}: {EXPORT_MARKER} names a model_file outside the folder ({name!r}); export the run again"
        )
    if not (folder / name).is_file():
        raise RunError(f"{folder}: {info.get('model_file', ONNX_FILE)} is missing; export the run again")
    return info


def training_summary(cfg: RunConfig, metrics: dict) -> str:
    """One card line: how long the run trained, what it kept, and any warning (shared by every task's card)."""
    t = metrics.get("training", {})
    sched = t.get("schedule") or {}
    if sched:
        text = (
            f"{t.get('steps', sched['total_steps'])} optimizer steps ({sched['epochs']:.3g} epochs, batch "
            f"{sched['batch_size']}; {sched['rule']})"
        )
    else:
        text = "no gradient steps (closed form)"
    text += f", learning rate {cfg.training.learning_rate}, seed {cfg.training.seed}"
    if metrics.get("auto"):
        text += f"\n- **Strategy chosen by auto:** {metrics['auto']['reason']}"
    for w in metrics.get("warnings", []):
        text += f"\n- **Warning:** {w}"
    return text


def save_predictions(run_dir: Path, metrics: dict) -> None:
    """Moves the per-example predictions the scorers attached out of ``metrics`` (every block: splits,
    baseline, discarded fine-tuned scores) and writes the test split's to ``test_predictions.json``
    (``{"y_true": [...], "y_pred": [...]}``: class names, or tag lists per sentence for NER). Called before
    anything else reads ``metrics`` for writing; ``metrics.json`` stays the last file a run writes."""
    # torch, numpy load on first use, not when artifacts is imported
    from transferkit.evaluation.scoring import PREDICTIONS

    test = metrics.get("test", {}).get(PREDICTIONS)

    def strip(block) -> None:
        if isinstance(block, dict):
            block.pop(PREDICTIONS, None)
            for value in block.values():
                strip(value)

    strip(metrics)
    if test is not None:
        atomic_write_json(run_dir / "test_predictions.json", test)


def save_json(path: Path, obj) -> None:
    """Atomic JSON write (no NaN)."""
    atomic_write_json(path, obj)


SPLITS = ("train", "validation", "test")
DATAFRAME = "<DataFrame>"  # data.train of runs fed pandas DataFrames (Python API)


@dataclass
class RunResult:
    """A finished run: its folder and its metrics (the content of ``metrics.json``)."""

    run_dir: Path
    metrics: dict


def outside(folder: str | Path, paths) -> list[str]:
    """The entries of ``paths`` (names relative to ``folder``, or paths under it) that resolve outside
    ``folder`` once symlinks are followed: a run or export folder must never make transferkit read elsewhere.
    """
    base = Path(folder).resolve()
    bad = []
    for p in paths:
        target = Path(folder) / p
        try:
            target.resolve().relative_to(base)
        except ValueError:
            bad.append(str(p))
    return bad
