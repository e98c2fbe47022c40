"""MLflow tracking: one MLflow run per finished fit, and a parent run per grid of fits.

A fit is logged after it finished, from what its run folder holds (``logs/train_log.jsonl``, ``metrics.json``,
plots, model card), so every task is logged the same way and a resumed run is one MLflow run:

- params: the resolved configuration, flattened (``training.learning_rate``), values as text;
- metrics: the training history under the names TensorBoard shows (``loss``, ``lr`` every
  ``training.log_every_steps`` steps; ``epoch``, ``train_loss``, ``validation/f1_macro`` at each evaluation)
  and the final numbers of the run's model (``validation.f1_macro``, ``test.accuracy``,
  ``pretrained_baseline.test.accuracy``);
- tags: task, strategy, backbone and ``tracking.tags``; ``mlflow.parentRunId`` for a child run;
- artifacts: metrics.json, config.yaml, labels.json, auto.json, the model card (README.md) and the plots.

``mlflow`` is imported only when ``tracking.mlflow`` is set. Any failure of MLflow (bad URI, unwritable store,
missing package) is one warning naming ``tracking.mlflow``; the run goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transferkit.config import RunConfig

__all__ = ["config_params", "final_metrics", "history_metrics", "log_parent_results", "log_run", "parent_run"]

log = logging.getLogger("transferkit")

MAX_PARAM_VALUE = 500  # characters: the smallest limit among MLflow servers in use (6000 since MLflow 2.x)
MAX_KEY = 250  # characters of a param, metric or tag name
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000  # log_batch limits
# metrics.json sections logged as final metrics
FINAL_SECTIONS = ("validation", "test", "pretrained_baseline")
ARTIFACT_FILES = ("metrics.json", "config.yaml", "labels.json", "auto.json", "README.md")
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /:]")  # characters MLflow refuses in names


def log_run(
    cfg: RunConfig, run_dir: str | Path, metrics: dict, history: list[dict] | None = None
) -> str | None:
    """Logs one finished fit to ``cfg.tracking.mlflow`` (nothing when it is unset or on a non-main process).

    Args:
        cfg: The run's configuration (its ``tracking`` section says where and how).
        run_dir: The finished run folder.
        metrics: The run's metrics (``metrics.json``).
        history: Training records (``{"step": ..., "loss": ...}``, evaluations with ``"validation"``); None reads
            ``RUN/logs/train_log.jsonl``.

    Returns:
        The MLflow run id, or None when tracking is off or failed (then one warning was logged).

    Example:
        >>> cfg.tracking.mlflow = "sqlite:///mlruns.db"  # doctest: +SKIP
        >>> log_run(cfg, result.run_dir, result.metrics)  # doctest: +SKIP
        'b1946ac92492d2347c6235b4d2611184'
    """
    uri = cfg.tracking.mlflow
    if not uri or not is_main_process():
        return None
    try:
        return _log_run(cfg, Path(run_dir), metrics, history)
    except Exception as err:  # tracking never fails a run
        _warn(uri, err)
        return None


@contextmanager
def parent_run(
    uri: str | None,
    experiment: str = "transferkit",
    name: str | None = None,
    params: dict | None = None,
    tags: dict[str, str] | None = None,
) -> Iterator[str | None]:
    """An MLflow run that groups several fits (a ``transferkit compare`` grid): set each fit's
    ``tracking.parent_run_id`` to the yielded id to log it as a child. The run ends FINISHED, or FAILED when the
    block raises.

    Args:
        uri: Tracking URI (``tracking.mlflow``); None yields None and logs nothing.
        experiment: Experiment name (the children are logged in the parent's experiment).
        name: Run name.
        params: Params of the grid (flattened like a config: nested dicts become ``a.b``).
        tags: Tags of the parent run.

    Yields:
        The parent's run id, or None when tracking is off or failed (one warning; the block still runs).
    """
    run_id, client = None, None
    if uri and is_main_process():
        try:
            client = _client(uri)
            run = client.create_run(
                _experiment_id(client, uri, experiment), run_name=name, tags=dict(tags or {})
            )
            run_id = run.info.run_id
            _log_batches(client, run_id, config_params(params or {}), [])
        except Exception as err:
            _warn(uri, err)
            if run_id is not None:
                _end(client, run_id, "FAILED")
            run_id = None
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    finally:
        if run_id is not None:
            _end(client, run_id, status)


def log_parent_results(
    uri: str | None, run_id: str | None, metrics: dict[str, float], artifacts: Iterable[str | Path] = ()
) -> None:
    """Adds a grid's summary to its parent run: numeric ``metrics`` (others are skipped) and ``artifacts``
    (files or folders, e.g. the comparison report). Nothing when ``uri`` or ``run_id`` is None; a failure is one
    warning.
    """
    if not uri or run_id is None or not is_main_process():
        return
    try:
        client = _client(uri)
        now = _now_ms()
        values = [(k, v, 0) for k, v in metrics.items() if _is_number(v)]
        _log_batches(client, run_id, [], [_metric(k, v, now, step) for k, v, step in values])
        for path in map(Path, artifacts):
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
            else:
                client.log_artifact(run_id, str(path))
    except Exception as err:
        _warn(uri, err)


# ------------------------------------------------------------------------------------------- what is logged


def config_params(config: dict) -> list[tuple[str, str]]:
    """``{"training": {"learning_rate": 5e-05}}`` -> ``[("training.learning_rate", "5e-05")]``: lists as JSON,
    values cut to MLflow's length limit. The ``tracking`` section is left out (its URI may hold credentials).
    """
    out = []
    for key, value in _flatten(config, ".", keep_lists=True):
        if key.startswith("tracking."):
            continue
        text = json.dumps(value) if isinstance(value, list) else str(value)
        out.append((_key(key), text[:MAX_PARAM_VALUE]))
    return out


def history_metrics(history: Iterable[dict]) -> list[tuple[str, float, int]]:
    """Training records -> ``(name, value, step)``, named as in TensorBoard (``loss``, ``validation/f1_macro``).

    Only numbers down to one level of nesting (per-class tables and confusion matrices are left out); a step
    recorded twice (a resumed run repeats the steps after its checkpoint) keeps its last value.
    """
    points: dict[tuple[str, int], float] = {}
    for record in history:
        step = int(record.get("step", 0))
        for key, value in _numbers(record, "/"):
            if key != "step":
                points[(key, step)] = value
    return [(key, value, step) for (key, step), value in points.items()]


def final_metrics(metrics: dict) -> list[tuple[str, float]]:
    """The run's final numbers: ``validation.f1_macro``, ``test.accuracy``,
    ``pretrained_baseline.test.accuracy``... (per-class tables and confusion matrices left out)."""
    out = []
    for section in FINAL_SECTIONS:
        if isinstance(metrics.get(section), dict):
            depth = 1 if section == "pretrained_baseline" else 0  # its own validation / test sections
            out += _numbers(metrics[section], ".", prefix=f"{section}.", depth=depth)
    return out


def run_artifacts(run_dir: Path) -> list[Path]:
    """The run folder's files worth keeping beside the numbers: metrics, config, manifest, card, plots."""
    return [run_dir / n for n in ARTIFACT_FILES if (run_dir / n).is_file()] + sorted(run_dir.glob("*.png"))


# ------------------------------------------------------------------------------------------------ the store


def is_main_process() -> bool:
    """True unless this is a secondary process of a distributed run (``RANK`` set by the launcher)."""
    return os.environ.get("RANK", "0") == "0"


def _log_run(cfg: RunConfig, run_dir: Path, metrics: dict, history: list[dict] | None) -> str:
    uri, tracking = cfg.tracking.mlflow, cfg.tracking
    client = _client(uri)
    if tracking.parent_run_id:
        experiment_id = client.get_run(tracking.parent_run_id).info.experiment_id
    else:
        experiment_id = _experiment_id(client, uri, tracking.experiment)
    tags = {
        "task": cfg.task.type,
        "strategy": str(metrics.get("strategy") or cfg.strategy.name),  # auto's choice when it chose
        "backbone": cfg.backbone.name,
        **tracking.tags,
    }
    if tracking.parent_run_id:
        tags["mlflow.parentRunId"] = tracking.parent_run_id
    run = client.create_run(experiment_id, run_name=tracking.run_name or run_dir.name, tags=tags)
    run_id = run.info.run_id
    try:
        if history is None:
            history = _read_history(run_dir / "logs" / "train_log.jsonl")
        now = _now_ms()
        points = history_metrics(history)
        last_step = max((step for _, _, step in points), default=0)
        points += [(key, value, last_step) for key, value in final_metrics(metrics)]
        config = cfg.model_dump(mode="json")
        _log_batches(client, run_id, config_params(config), [_metric(k, v, now, s) for k, v, s in points])
        for path in run_artifacts(run_dir):
            client.log_artifact(run_id, str(path))
    except BaseException:
        _end(client, run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, uri: str, name: str) -> str:
    """The id of experiment ``name``, created when missing. On a SQLite store its artifacts go beside the
    database (``mlartifacts/``) instead of MLflow's default ``./mlruns`` under the current folder."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        db = Path(uri[len("sqlite:///") :])
        location = (db.resolve().parent / "mlartifacts" / re.sub(r"[^A-Za-z0-9._-]+", "-", name)).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _log_batches(client, run_id: str, params: list[tuple[str, str]], metrics: list) -> None:
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in params]
    for i in range(0, len(params), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[i : i + PARAMS_PER_BATCH])
    for i in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_BATCH])


def _metric(key: str, value: float, timestamp: int, step: int):
    from mlflow.entities import Metric

    return Metric(_key(key), float(value), timestamp, step)


def _end(client, run_id: str, status: str) -> None:
    try:
        client.set_terminated(run_id, status)
    except Exception as err:  # the store broke meanwhile: the warning about it was already given
        log.debug("tracking.mlflow: could not end run %s: %s", run_id, err)


def _warn(uri: str, err: BaseException) -> None:
    """One line: which setting, which store (credentials hidden) and why."""
    reason = " ".join(str(err).split())[:300] or "no message"
    safe_uri = re.sub(r"//[^/@]*@", "//***@", uri)
    log.warning(
        "tracking.mlflow (%s): not logged, the run goes on: %s: %s", safe_uri, type(err).__name__, reason
    )


# ------------------------------------------------------------------------------------------------ helpers


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _flatten(d: dict, sep: str, prefix: str = "", keep_lists: bool = False) -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, sep, f"{prefix}{k}{sep}", keep_lists)
        elif keep_lists or not isinstance(v, list):
            out.append((f"{prefix}{k}", v))
    return out


def _numbers(d: dict, sep: str, prefix: str = "", depth: int = 1) -> list[tuple[str, float]]:
    """Finite numbers of ``d`` and of its dicts down to ``depth`` levels (``validation/f1_macro``)."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and depth > 0:
            out += _numbers(v, sep, f"{prefix}{k}{sep}", depth - 1)
        elif _is_number(v) and math.isfinite(v):
            out.append((f"{prefix}{k}", float(v)))
    return out


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _key(name: str) -> str:
    return _BAD_KEY.sub("_", name)[:MAX_KEY]


def _now_ms() -> int:
    return int(time.time() * 1000)
