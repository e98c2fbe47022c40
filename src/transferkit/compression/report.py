"""What compression cost and bought: size, latency at batch 1 and 32, accuracy and macro-F1 per stage."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd

from transferkit.errors import DataError, RunError

REPORT_FILE = "report.json"
COLUMNS = (
    ("stage", "stage", "{}"),
    ("size_mb", "size MB", "{:.1f}"),
    ("latency_ms_batch1", "ms @1", "{:.1f}"),
    ("latency_ms_batch32", "ms @32", "{:.1f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("f1_macro", "macro-F1", "{:.4f}"),
    ("sparsity", "sparsity", "{:.2f}"),
)


def model_size_bytes(folder: str | Path) -> int:
    """Bytes of the model weights: ``model.onnx`` of an export, ``model/*.safetensors`` (or ``*.bin``) of a run."""
    folder = Path(folder)
    if (folder / "export.json").is_file():
        import json

        return (
            (folder / json.loads((folder / "export.json").read_text()).get("model_file", "model.onnx"))
            .stat()
            .st_size
        )
    files = [*(folder / "model").glob("*.safetensors"), *(folder / "model").glob("*.bin")]
    return sum(f.stat().st_size for f in files)


def evaluation_frame(
    run_dir: Path,
    problem: str,
    data: str | Path | None,
    text_column: str = "text",
    label_column: str = "label",
) -> tuple[pd.DataFrame, str]:
    """The labelled examples to score on and where they came from: ``data`` if given, else the run's test split.

    Raises:
        RunError: when the run was trained from DataFrames (nothing to reload) and no ``data`` is given.
    """
    # sklearn, scipy, PIL ... load on first use, not when report is imported
    from transferkit.data import read_labelled

    if data is not None:
        return read_labelled(data, text_column, label_column, problem), str(data)
    return load_run_splits(run_dir).test, "test split of the run's data"


def load_run_splits(run_dir: Path):
    """The run's train / validation / test examples, reloaded from its ``config.yaml`` (same split seed)."""
    # yaml load on first use, not when report is imported
    from transferkit.artifacts import DATAFRAME

    # yaml load on first use, not when report is imported
    from transferkit.config import load_config

    # sklearn, scipy, PIL ... load on first use, not when report is imported
    from transferkit.data import load_splits

    cfg_file = Path(run_dir) / "config.yaml"
    if not cfg_file.is_file():
        raise RunError(f"{run_dir}: no config.yaml, so its data cannot be reloaded; give --data FILE")
    cfg = load_config(cfg_file)
    if cfg.data.train == DATAFRAME:
        raise RunError(
            f"{run_dir}: trained from pandas DataFrames, so its data cannot be reloaded; give --data FILE (labelled)"
        )
    return load_splits(cfg.data, cfg.task.problem)


def latency_ms(predictor, texts: list[str], batch: int, repeats: int) -> float:
    """Median wall time in ms of ``predictor.predict`` on ``batch`` texts (after one warm-up call)."""
    chunk = (texts * (batch // max(len(texts), 1) + 1))[:batch]
    predictor.predict(chunk)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict(chunk)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(predictor, frame: pd.DataFrame, stage: str, repeats: int = 10, extra: dict | None = None) -> dict:
    """One report row: size, latency at batch 1 and 32, and the metrics of ``predictor`` on ``frame``.

    Raises:
        DataError: if ``frame`` holds labels the model never saw.
    """
    # sklearn, scipy, PIL ... load on first use, not when report is imported
    from transferkit.data.targets import encode_targets

    # torch load on first use, not when report is imported
    from transferkit.evaluation.scoring import score

    texts = frame["text"].astype(str).tolist()
    if predictor.problem != "regression":
        seen = {lab for labs in frame["label"] for lab in (labs if isinstance(labs, list) else [labs])}
        unseen = sorted(seen - set(predictor.labels))
        if unseen:
            raise DataError(
                f"evaluation labels {', '.join(map(repr, unseen[:5]))} were never seen by the model; check --label-column"
            )
    metrics = score(predictor.logits(texts), encode_targets(frame, predictor.problem, predictor.labels),
                    predictor.problem, predictor.labels)  # fmt: skip
    row = {
        "stage": stage,
        "folder": str(predictor.run_dir),
        "size_mb": model_size_bytes(predictor.run_dir) / 2**20,
        "latency_ms_batch1": latency_ms(predictor, texts, 1, repeats),
        "latency_ms_batch32": latency_ms(predictor, texts, 32, max(2, repeats // 4)),
        "metrics": {k: v for k, v in metrics.items() if not isinstance(v, dict | list)},
        **(extra or {}),
    }
    for key in ("accuracy", "f1_macro", "rmse"):
        if key in metrics:
            row[key] = metrics[key]
    return row


def format_table(rows: list[dict]) -> str:
    """A plain-text table of report rows, with ratios against the first row."""
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = [[title for _, title, _ in cols] + ["speed-up @1", "size ratio"]]
    base = rows[0]
    for r in rows:
        cells = [fmt.format(r[key]) if key in r else "-" for key, _, fmt in cols]
        cells.append(f"{base['latency_ms_batch1'] / r['latency_ms_batch1']:.2f}x")
        cells.append(f"{r['size_mb'] / base['size_mb']:.2f}" if base["size_mb"] else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
