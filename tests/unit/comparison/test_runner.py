"""`transferkit compare` end to end on the tiny BERT: cells, baselines, shared features, resume, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

import transferkit
from transferkit.comparison import cells, runner
from transferkit.errors import ConfigError, RunError

SETTINGS = ["training.max_steps=3", "output.tensorboard=false", "backbone.max_length=16"]


def _config(tmp: Path, toy: pd.DataFrame) -> Path:
    toy.to_csv(tmp / "train.csv", index=False)
    cfg = {"backbone": {"name": "tiny-bert"}, "data": {"train": str(tmp / "train.csv")}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "run.yaml"


def _grid(tmp_path, toy, **kw):
    args = dict(strategies="linear-probe,lp-ft", budgets="4,8", seeds=2, output=tmp_path / "cmp",
                overrides=SETTINGS, progress=False)  # fmt: skip
    return transferkit.compare(_config(tmp_path, toy), **(args | kw))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    from tests.conftest import make_toy_frame

    tmp = tmp_path_factory.mktemp("compare")
    return _grid(tmp, make_toy_frame(160))


def test_every_cell_runs_and_is_recorded(grid) -> None:
    cells = grid.results["cells"]
    assert {c["status"] for c in cells} == {"done"}
    kinds = {c["strategy"]: c["kind"] for c in cells}
    assert kinds == {"linear-probe": "transfer", "lp-ft": "transfer", "scratch": "scratch",
                     "tfidf+lr": "classical", "majority": "majority"}  # fmt: skip
    assert len(cells) == 5 * 2 * 2
    for c in cells:
        assert 0.0 <= c["test"] <= 1.0 and c["wall_seconds"] >= 0
        assert c["examples"] == (8 if c["budget"] == 4 else 16)  # two classes
        preds = json.loads((grid.dir / c["predictions"]).read_text())
        assert len(preds["y_true"]) == len(preds["y_pred"]) == grid.results["plan"]["test"]
    neural = [c for c in cells if c["run_dir"]]
    assert all((grid.dir / c["run_dir"] / "metrics.json").is_file() for c in neural)
    assert all(c["peak_rss_mb"] > 50 for c in neural)


def test_scratch_cells_train_random_weights_without_the_guard(grid) -> None:
    scratch = next(c for c in grid.results["cells"] if c["strategy"] == "scratch")
    cfg = yaml.safe_load((grid.dir / scratch["run_dir"] / "config.yaml").read_text())
    assert cfg["backbone"]["pretrained"] is False and cfg["strategy"]["name"] == "full"
    assert cfg["evaluation"]["keep_better"] is False
    assert scratch["model"] == "fine_tuned"


def test_budgets_are_nested_and_validation_and_test_are_shared(grid) -> None:
    small = json.loads((grid.dir / "cells" / "tfidf+lr-b4-s0" / "test_predictions.json").read_text())
    other = json.loads((grid.dir / "cells" / "lp-ft-b8-s1" / "test_predictions.json").read_text())
    assert small["y_true"] == other["y_true"]  # one test set for every cell


def test_the_frozen_features_are_computed_once_for_the_grid(grid) -> None:
    feats = grid.results["features"]
    plan = grid.results["plan"]
    shared = plan["validation"] + plan["test"]
    # every example the grid saw once: the largest draws of both seeds plus one validation + test pass
    assert feats["computed"] <= 2 * 16 + shared
    assert feats["reused"] > feats["computed"]
    assert feats["saved_seconds"] >= 0


def test_the_report_is_written_and_results_csv_has_a_row_per_cell(grid) -> None:
    assert (grid.dir / "report.html").is_file() and (grid.dir / "report.md").is_file()
    assert len(pd.read_csv(grid.dir / "results.csv")) == len(grid.results["cells"])
    assert "scratch" in grid.results["summary"]["verdict"]


def test_resume_skips_finished_cells_and_reruns_pending_ones(grid, tmp_path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(grid.dir, copy)
    results = json.loads((copy / "results.json").read_text())
    target = next(c for c in results["cells"] if c["id"] == "lp-ft-b8-s1")
    target.update(status="pending", test=None)
    shutil.rmtree(copy / "cells" / "lp-ft-b8-s1")
    finished = {c["id"]: c["wall_seconds"] for c in results["cells"] if c["status"] == "done"}
    (copy / "results.json").write_text(json.dumps(results))
    res = transferkit.compare(resume=copy, progress=False)
    after = {c["id"]: c for c in res.results["cells"]}
    assert after["lp-ft-b8-s1"]["status"] == "done" and isinstance(after["lp-ft-b8-s1"]["test"], float)
    assert all(after[i]["wall_seconds"] == w for i, w in finished.items())  # not run again


def test_a_failed_cell_is_recorded_with_its_error_and_the_grid_goes_on(tmp_path, monkeypatch) -> None:
    from tests.conftest import make_toy_frame

    def broken(cell, root, frames, spec):
        raise ValueError("the classical baseline broke\nsecond line")

    monkeypatch.setattr(cells, "run_baseline", broken)
    res = _grid(tmp_path, make_toy_frame(80), strategies="linear-probe", budgets="4", seeds=1)
    by = {c["strategy"]: c for c in res.results["cells"]}
    assert by["tfidf+lr"]["status"] == "failed"
    assert by["tfidf+lr"]["error"] == "ValueError: the classical baseline broke"
    assert by["linear-probe"]["status"] == by["scratch"]["status"] == "done"


def test_bad_requests_fail_before_anything_runs(tmp_path) -> None:
    from tests.conftest import make_toy_frame

    with pytest.raises(ConfigError, match="--budgets"):
        _grid(tmp_path, make_toy_frame(40), budgets="8,lots")
    with pytest.raises(ConfigError, match="unknown strategy"):
        _grid(tmp_path, make_toy_frame(40), strategies="probe")
    with pytest.raises(ConfigError, match="--seeds-at-all"):
        _grid(tmp_path, make_toy_frame(40), seeds=2, seeds_at_all=3)
    assert not (tmp_path / "cmp").exists()
    with pytest.raises(RunError, match="not a compare folder"):
        transferkit.compare(resume=tmp_path)


def test_durations() -> None:
    assert runner.parse_duration("45m") == 2700 and runner.parse_duration("1h30m") == 5400
    assert runner.parse_duration("90s") == 90 and runner.parse_duration("600") == 600
    with pytest.raises(ConfigError, match="--time-budget"):
        runner.parse_duration("soon")


def test_a_compare_is_one_mlflow_parent_run_with_a_child_per_neural_cell(tmp_path) -> None:
    from mlflow.tracking import MlflowClient
    from tests.conftest import make_toy_frame

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    res = _grid(tmp_path, make_toy_frame(60), strategies="linear-probe", budgets="4", seeds=1,
                overrides=[*SETTINGS, f"tracking.mlflow={uri}"])  # fmt: skip
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags.get("kind") == "compare"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.tags["strategy"] for r in children) == [
        "full",
        "linear-probe",
    ]  # scratch trains full
    assert {r.data.tags["budget"] for r in children} == {"4"} and {r.data.tags["seed"] for r in children} == {
        "0"
    }
    done = [c for c in res.results["cells"] if isinstance(c.get("test"), float)]
    assert len(parents[0].data.metrics) == len(done)
