"""The one contract every predictor keeps, whatever its task: what ``transferkit.load(RUN)`` returns.

Entry points (``transferkit predict`` / ``evaluate``, serving, comparisons) use only what is declared here,
so they call every task the same way. A predictor may take more (keyword) parameters after the shared ones,
e.g. the label separator of multi-label text files or ``on_bad_image`` for images.

This module stays light (no torch): the task registry and the CLI import it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from transferkit.errors import DataError
from transferkit.manifest import read_run_json
from transferkit.utils.io import atomic_save_via, atomic_write_text


class BasePredictor(ABC):
    """A loaded run (or exported folder) of any task.

    Attributes:
        task: The task name the run was trained for (a key of :data:`transferkit.tasks.TASKS`).
        labels: The label (or tag) names, in the model's output order; empty for generation.
        metrics: The run's ``metrics.json`` (empty for a folder without one).
        run_dir: The folder it was loaded from.
        precision: The precision forward passes run at (``transferkit.load(..., precision=...)``).

    ``input_column`` / ``label_column`` set to None mean the task's own default columns: ``text`` / ``label``
    (text classification), ``path`` / ``label`` (images), the run's tokens / tags columns (token
    classification) and the run's prompt / completion columns (generation).
    """

    task: str
    labels: list[str]
    metrics: dict
    run_dir: Path
    # the autocast precision of forward passes (a transferkit.hardware.Precision, or its name); None is fp32.
    # transferkit.load sets it: by default to the precision the run trained and evaluated at.
    precision: Any = None

    @abstractmethod
    def predict(self, inputs: Any) -> list:
        """One JSON-ready prediction per input, in input order (one bare input counts as a list of one)."""

    @abstractmethod
    def evaluate(
        self, path: str | Path, input_column: str | None = None, label_column: str | None = None
    ) -> dict:
        """Metrics on a labelled file, with the keys of the run's ``metrics.json`` splits.

        Raises:
            DataError: for a bad file or column, or labels the model never saw.
        """

    @abstractmethod
    def predict_file(self, path: str | Path, output: str | Path, input_column: str | None = None) -> Path:
        """Predicts every row of ``path`` and writes them, with the predictions, to the new file ``output``.

        Returns:
            ``output``.

        Raises:
            DataError: for a bad file or column, or an ``output`` that already exists (never overwritten).
        """


def apply_unmerged_adapter(model, run_dir: Path) -> bool:
    """Puts a run's adapter back into ``model.backbone`` when it was saved unmerged (``--no-merge``); shared
    by the predictors whose model has a ``backbone`` (text and image classification).

    Returns:
        True if an adapter was applied (and merged in memory, for speed).
    """

    info_file = run_dir / "adapter" / "transferkit.json"
    if not info_file.is_file() or read_run_json(info_file).get("merged", True):
        return False
    # torch, transformers, peft ... load on first use, not when predictors is imported
    from peft import PeftModel

    # injects the adapter into model.backbone in place; merging then leaves a plain backbone
    PeftModel.from_pretrained(model.backbone, str(run_dir / "adapter")).merge_and_unload()
    return True


def _exists_error(output: Path) -> DataError:
    return DataError(f"{output}: already exists; choose another --output (files are never overwritten)")


def refuse_existing(output: str | Path) -> Path:
    """``output`` as a Path; DataError if it exists (predictions never overwrite a file).

    A check before the work starts, so none is wasted; the write itself (:func:`write_table`,
    :func:`write_new_text`) checks again, atomically, for a file that appeared in the meantime.
    """
    output = Path(output)
    if output.exists():
        raise _exists_error(output)
    return output


def add_columns(frame, columns: dict[str, list], path: str | Path):
    """A copy of ``frame`` with the prediction ``columns`` added.

    Raises:
        DataError: naming the input columns that have a prediction column's name (a user's ``score`` or
            ``p_pos`` is never silently replaced); rename them in ``path``.
    """
    taken = [name for name in columns if name in frame.columns]
    if taken:
        raise DataError(
            f"{path}: already has the column(s) {', '.join(map(repr, taken))}, which the predictions would "
            f"replace; rename them (prediction columns: {', '.join(columns)})"
        )
    out = frame.copy()
    for name, values in columns.items():
        out[name] = values
    return out


def write_new_text(text: str, output: str | Path) -> Path:
    """Writes ``text`` atomically to the new file ``output``; DataError if it exists, even if it appeared
    while the predictions ran."""

    output = Path(output)
    try:
        return atomic_write_text(output, text, exclusive=True)
    except FileExistsError as e:
        raise _exists_error(output) from e


def write_table(frame, output: str | Path) -> Path:
    """Writes a DataFrame atomically as JSONL, Parquet, TSV or CSV (by ``output``'s suffix) to a new file.

    Raises:
        DataError: if ``output`` exists, even if it appeared while the predictions ran (never overwritten).
    """

    output = refuse_existing(output)
    suffix = output.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        writer = lambda p: frame.to_json(p, orient="records", lines=True, force_ascii=False)  # noqa: E731
    elif suffix in (".parquet", ".pq"):
        writer = lambda p: frame.to_parquet(p, index=False)  # noqa: E731
    else:
        sep = "\t" if suffix in (".tsv", ".tab") else ","
        writer = lambda p: frame.to_csv(p, index=False, sep=sep)  # noqa: E731
    try:
        return atomic_save_via(output, writer, exclusive=True)
    except FileExistsError as e:
        raise _exists_error(output) from e


__all__ = [
    "BasePredictor",
    "add_columns",
    "apply_unmerged_adapter",
    "refuse_existing",
    "write_new_text",
    "write_table",
]
