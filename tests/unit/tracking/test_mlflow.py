"""MLflow tracking: a tiny fit logged to a real SQLite store and read back, parent and child runs, and a broken
store that costs one warning and nothing else."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

import transferkit
from transferkit.config import load_config
from transferkit.tracking import log_parent_results, log_run, parent_run
from transferkit.tracking.mlflow import MAX_PARAM_VALUE, config_params, final_metrics, history_metrics

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

TINY = [
    "training.learning_rate=1e-3",
    "training.progress=false",
    "training.log_every_steps=1",
    "evaluation.keep_better=false",
]


def _fit(csv: Path, output: Path, *overrides: str):
    return transferkit.fit(
        train=str(csv), backbone="tiny-bert", strategy="full", epochs=2, output=str(output),
        overrides=[*TINY, *overrides],
    )  # fmt: skip


def _tracking_warnings(caplog) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "transferkit" and r.levelno == logging.WARNING and "tracking.mlflow" in r.getMessage()
    ]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, toy_csv_session):
    """One tiny fit logged to a fresh SQLite store: (uri, RunResult, the MLflow run)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlruns.db"
    result = _fit(toy_csv_session, root / "run", f"tracking.mlflow={uri}", "tracking.tags.budget=8")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("transferkit")
    (run,) = client.search_runs([experiment.experiment_id])
    return uri, result, run


def test_params_are_the_resolved_config(tracked) -> None:
    _, result, run = tracked
    params = run.data.params
    assert params["training.learning_rate"] == "0.001"
    assert params["backbone.name"] == "tiny-bert"
    assert params["training.epochs"] == "2.0"
    assert params["strategy.name"] == "full"
    assert not [k for k in params if k.startswith("tracking.")]  # the URI may carry credentials


def test_history_has_every_step_and_every_evaluation(tracked) -> None:
    uri, result, run = tracked
    client = MlflowClient(tracking_uri=uri)
    steps = result.metrics["training"]["steps"]
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in sorted(loss, key=lambda m: m.step)] == list(range(1, steps + 1))
    evaluations = client.get_metric_history(run.info.run_id, "validation/f1_macro")
    assert len(evaluations) >= 2 and max(m.step for m in evaluations) == steps
    assert sorted(m.value for m in client.get_metric_history(run.info.run_id, "epoch")) == [1.0, 2.0]


def test_final_metrics_tags_and_status(tracked) -> None:
    _, result, run = tracked
    metrics = run.data.metrics
    assert metrics["test.accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    assert metrics["validation.f1_macro"] == pytest.approx(result.metrics["validation"]["f1_macro"])
    assert "pretrained_baseline.test.accuracy" in metrics
    assert not [k for k in metrics if "confusion_matrix" in k or "per_class" in k]
    tags = run.data.tags
    assert (tags["task"], tags["strategy"], tags["backbone"], tags["budget"]) == (
        "text-classification", "full", "tiny-bert", "8",
    )  # fmt: skip
    assert "mlflow.parentRunId" not in tags
    assert run.info.status == "FINISHED" and run.info.run_name == result.run_dir.name


def test_artifacts_are_the_run_folders_reports(tracked) -> None:
    uri, result, run = tracked
    client = MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.yaml", "README.md", "training_curves.png"} <= names
    assert "model" not in names
    # artifacts sit beside the database, not in ./mlruns of whatever folder the fit ran in
    db_folder = uri.removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert run.info.artifact_uri.startswith(Path(db_folder).resolve().as_uri())
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="metrics.json", tracking_uri=uri))  # fmt: skip
    assert json.loads(local.read_text()) == json.loads((result.run_dir / "metrics.json").read_text())


def test_child_runs_nest_under_a_parent(tmp_path: Path, toy_csv_session: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    report = tmp_path / "report.md"
    report.write_text("# grid\n")
    with parent_run(
        uri, "grid", name="compare", params={"budgets": [8, 16]}, tags={"kind": "compare"}
    ) as pid:
        assert pid is not None
        child = _fit(
            toy_csv_session, tmp_path / "cell", f"tracking.mlflow={uri}", f"tracking.parent_run_id={pid}"
        )
        log_parent_results(uri, pid, {"best.test.f1_macro": 0.75, "winner": "full"}, [report])
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(pid)
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"budgets": "[8, 16]"} and parent.data.tags["kind"] == "compare"
    assert parent.data.metrics == {"best.test.f1_macro": 0.75}  # the text value is left out
    assert [a.path for a in client.list_artifacts(pid)] == ["report.md"]
    (cell,) = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{pid}'")
    assert cell.info.run_name == child.run_dir.name  # logged in the parent's experiment, not "transferkit"
    assert cell.data.metrics["test.accuracy"] == pytest.approx(child.metrics["test"]["accuracy"])


def test_parent_run_fails_with_its_block(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    with pytest.raises(RuntimeError), parent_run(uri, "grid") as pid:
        raise RuntimeError("a cell failed")
    assert MlflowClient(tracking_uri=uri).get_run(pid).info.status == "FAILED"


def test_a_broken_store_is_one_warning_and_the_fit_finishes(
    tmp_path: Path, toy_csv_session: Path, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        result = _fit(toy_csv_session, tmp_path / "run", "tracking.mlflow=nosuch://nowhere")
    (warning,) = _tracking_warnings(caplog)
    assert "nosuch://nowhere" in warning.getMessage() and "\n" not in warning.getMessage()
    assert (result.run_dir / "metrics.json").is_file() and "accuracy" in result.metrics["test"]


def test_an_unwritable_store_warns_once(tracked, caplog) -> None:
    _, result, _ = tracked
    cfg = load_config(
        result.run_dir / "config.yaml", ["tracking.mlflow=sqlite:////proc/no/such/folder/mlruns.db"]
    )
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        assert log_run(cfg, result.run_dir, result.metrics) is None
    (warning,) = _tracking_warnings(caplog)
    assert "/proc/no/such/folder" in warning.getMessage()


def test_credentials_in_the_uri_stay_out_of_the_warning(tracked, caplog, monkeypatch) -> None:
    _, result, _ = tracked
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    monkeypatch.delitem(sys.modules, "mlflow.tracking", raising=False)
    cfg = load_config(result.run_dir / "config.yaml", ["tracking.mlflow=https://user:secret@mlflow.example"])
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        assert log_run(cfg, result.run_dir, result.metrics) is None
    (warning,) = _tracking_warnings(caplog)
    assert "ModuleNotFoundError" in warning.getMessage() and "secret" not in warning.getMessage()


def test_tracking_off_never_imports_mlflow(tracked, caplog, monkeypatch) -> None:
    _, result, _ = tracked
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.delitem(sys.modules, "mlflow.tracking", raising=False)
    cfg = load_config(result.run_dir / "config.yaml", ["tracking.mlflow=null"])
    assert cfg.tracking.mlflow is None
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        assert log_run(cfg, result.run_dir, result.metrics) is None
        with parent_run(None, "grid") as pid:
            log_parent_results(None, pid, {"a": 1.0})
    assert pid is None and not _tracking_warnings(caplog)


def test_only_the_main_process_logs(tracked, monkeypatch, tmp_path: Path) -> None:
    _, result, _ = tracked
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    cfg = load_config(result.run_dir / "config.yaml", ["tracking.mlflow=sqlite:///never.db"])
    assert log_run(cfg, result.run_dir, result.metrics) is None
    assert not Path("never.db").exists()


# ------------------------------------------------------------------------------- what becomes params / metrics


def test_config_params_flatten_and_respect_the_length_limit() -> None:
    params = dict(config_params({"a": {"b": 1, "c": None, "d": [1, 2]}, "long": "x" * 10_000, "tracking": {"mlflow": "u"}}))  # fmt: skip
    assert params == {"a.b": "1", "a.c": "None", "a.d": "[1, 2]", "long": "x" * MAX_PARAM_VALUE}


def test_history_keeps_the_last_value_of_a_repeated_step() -> None:
    # a resumed run repeats the steps after its checkpoint in train_log.jsonl
    history = [
        {"step": 1, "loss": 0.9, "lr": 1e-3},
        {"step": 2, "loss": 0.8, "lr": 1e-3},
        {"step": 2, "loss": 0.7, "lr": 1e-3},
        {
            "step": 2,
            "epoch": 1.0,
            "stage": "train",
            "validation": {"f1_macro": 0.5, "per_class": {"a": {"f1": 1}}},
        },
    ]
    points = sorted(history_metrics(history))
    assert ("loss", 0.7, 2) in points and ("loss", 0.8, 2) not in points
    assert ("validation/f1_macro", 0.5, 2) in points and ("epoch", 1.0, 2) in points
    assert not [p for p in points if "per_class" in p[0] or p[0] in ("step", "stage")]


def test_final_metrics_skip_tables_and_text() -> None:
    metrics = {
        "test": {"accuracy": 0.9, "confusion_matrix": {"labels": ["a"], "matrix": [[1]]}, "per_class": {"a": {"f1": 1.0}}},
        "validation": {"f1_macro": 0.8, "nan": float("nan"), "flag": True},
        "pretrained_baseline": {"test": {"accuracy": 0.6}, "method": "probe"},
        "model": "fine_tuned",
    }  # fmt: skip
    assert dict(final_metrics(metrics)) == {
        "test.accuracy": 0.9, "validation.f1_macro": 0.8, "pretrained_baseline.test.accuracy": 0.6,
    }  # fmt: skip
