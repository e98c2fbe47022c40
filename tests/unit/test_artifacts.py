"""The run folder and loading it back: every artefact, read_run's checks, Predictor and its file I/O."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import transferkit
from transferkit.artifacts import create_run_dir, read_run
from transferkit.config import load_config
from transferkit.data import load_splits
from transferkit.errors import DataError, RunError

SPLIT_KEYS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "per_class")
PNG = b"\x89PNG\r\n\x1a\n"
TEXTS = ["a great film", "boring and dreadful", "the actor was superb"]


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return tiny_run.run_dir


@pytest.fixture(scope="module")
def predictor(run_dir: Path):
    return transferkit.load(run_dir)


def test_config_yaml_round_trips(tiny_run_args: dict, run_dir: Path) -> None:
    a = tiny_run_args
    started_with = load_config(
        None,
        [
            f"data.train={a['train']}",
            f"backbone.name={a['backbone']}",
            f"strategy.name={a['strategy']}",
            f"training.epochs={a['epochs']}",
            f"output.dir={a['output']}",
            *a["overrides"],
        ],
    )
    assert load_config(run_dir / "config.yaml") == started_with


def _outcome(metrics: dict) -> dict:
    """metrics.json without wall-clock timings."""
    return {k: v for k, v in metrics.items() if k != "training"} | {"steps": metrics["training"]["steps"]}


@pytest.fixture(scope="module")
def frames_run(tiny_run_args: dict, tmp_path_factory: pytest.TempPathFactory):
    """``tiny_run`` again, with the same examples given as a DataFrame instead of the CSV."""
    args = {k: v for k, v in tiny_run_args.items() if k != "train"}
    args["output"] = str(tmp_path_factory.mktemp("frames") / "run")
    args["overrides"] = [*args["overrides"], "output.tensorboard=false"]
    frame = pd.read_csv(tiny_run_args["train"])
    return transferkit.fit(frames={"train": frame}, **args)


def test_fit_from_frames_equals_fit_from_file(tiny_run, frames_run) -> None:
    assert _outcome(frames_run.metrics) == _outcome(tiny_run.metrics)


def test_config_yaml_of_a_frames_run_loads(frames_run) -> None:
    load_config(frames_run.run_dir / "config.yaml")


def test_metrics_json(tiny_run, run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(tiny_run.metrics))
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    assert labels == ["neg", "pos"]
    for split in ("test", "validation"):
        for key in SPLIT_KEYS:
            assert key in metrics[split], (split, key)
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
        assert set(metrics[split]["per_class"]) == set(labels)
    baseline = metrics["pretrained_baseline"]
    assert {"test", "validation", "method"} <= set(baseline)
    assert "accuracy" in baseline["test"]
    assert metrics["trainable_parameters"] == metrics["total_parameters"] > 0


def test_confusion_matrix_files(tiny_run, run_dir: Path) -> None:
    cm = json.loads((run_dir / "confusion_matrix.json").read_text())
    assert cm["labels"] == ["neg", "pos"]
    assert sum(map(sum, cm["matrix"])) == tiny_run.metrics["test"]["num_examples"]
    for name in ("confusion_matrix.png", "training_curves.png"):
        assert (run_dir / name).read_bytes()[:8] == PNG, name


def test_model_card(tiny_run, run_dir: Path) -> None:
    text = (run_dir / "README.md").read_text()
    m = tiny_run.metrics
    assert "**Strategy:** `full`" in text
    assert f"{m['test']['accuracy']:.4f}" in text
    assert f"{m['trainable_parameters']:,}" in text
    assert "trust_remote_code=True" in text


def test_train_log_and_tensorboard(tiny_run, run_dir: Path) -> None:
    records = [json.loads(line) for line in (run_dir / "logs" / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r and "validation" not in r]
    evals = [r for r in records if "validation" in r]
    assert steps and evals
    assert all({"step", "lr"} <= set(r) for r in steps)
    assert [r["step"] for r in steps] == sorted(r["step"] for r in steps)
    assert all({"step", "epoch"} <= set(r) for r in evals)
    assert evals[-1]["step"] == tiny_run.metrics["training"]["steps"]
    assert evals[-1]["epoch"] == pytest.approx(2.0)
    assert list((run_dir / "logs" / "tensorboard").glob("events.out.tfevents.*"))


def test_model_folder_is_self_contained(run_dir: Path) -> None:
    model = run_dir / "model"
    for name in ("config.json", "model.safetensors", "modeling_transferkit.py", "tokenizer_config.json"):
        assert (model / name).is_file(), name
    config = json.loads((model / "config.json").read_text())
    assert config["model_type"] == "transferkit"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForSequenceClassification"}
    assert not (run_dir / "model.partial").exists()


def test_create_run_dir_refuses_existing(tmp_path: Path) -> None:
    existing = tmp_path / "run"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="already exists"):
        create_run_dir(existing)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert (existing / "keep.txt").read_text() == "mine"
    fresh = create_run_dir(tmp_path / "a" / "b")
    assert fresh.is_dir() and not list(fresh.iterdir())


def test_read_run_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run folder"):
        read_run(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("{}")
    with pytest.raises(RunError, match="not a finished run"):
        read_run(tmp_path / "half")
    with pytest.raises(RunError):
        transferkit.load(tmp_path / "half")


def test_predict(predictor) -> None:
    preds = predictor.predict(TEXTS)
    assert len(preds) == len(TEXTS)
    probs = predictor.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), 2)
    for pred, row in zip(preds, probs, strict=True):
        assert set(pred) == {"label", "score", "scores"}
        assert set(pred["scores"]) == {"neg", "pos"}
        assert sum(pred["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert pred["label"] == max(pred["scores"], key=pred["scores"].get)
        assert pred["score"] == pred["scores"][pred["label"]]
        assert [pred["scores"]["neg"], pred["scores"]["pos"]] == pytest.approx(row.tolist())
    assert predictor.predict(TEXTS[0]) == preds[:1]
    assert predictor.predict([]) == []


def test_predictions_do_not_depend_on_batching(run_dir: Path) -> None:
    one = transferkit.load(run_dir, batch_size=1).predict_proba(TEXTS)
    many = transferkit.load(run_dir, batch_size=64).predict_proba(TEXTS)
    assert one == pytest.approx(many, abs=1e-5)


def test_reloaded_model_reproduces_test_metrics(tiny_run, run_dir: Path, predictor, tmp_path: Path) -> None:
    # Save -> load -> same predictions: the reloaded model scores the run's own test split as the run did.
    cfg = load_config(run_dir / "config.yaml")
    test = load_splits(cfg.data, cfg.task.problem).test
    path = tmp_path / "test.csv"
    test.to_csv(path, index=False)
    metrics = predictor.evaluate(path)
    assert metrics["num_examples"] == tiny_run.metrics["test"]["num_examples"]
    assert metrics["accuracy"] == tiny_run.metrics["test"]["accuracy"]
    assert metrics["loss"] == pytest.approx(tiny_run.metrics["test"]["loss"], abs=1e-5)


def _check_predictions(frame: pd.DataFrame, source: pd.DataFrame) -> None:
    assert len(frame) == len(source)
    assert list(frame["text"]) == list(source["text"])
    assert {"predicted_label", "score", "p_neg", "p_pos"} <= set(frame.columns)
    assert set(frame["predicted_label"]) <= {"neg", "pos"}
    assert (frame["p_neg"] + frame["p_pos"]).to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert frame["score"].to_numpy() == pytest.approx(frame[["p_neg", "p_pos"]].max(axis=1).to_numpy())


def test_predict_file_csv(predictor, tmp_path: Path) -> None:
    # A gold `label` column is the user's: predictions go to new columns beside it.
    source = pd.DataFrame({"id": [1, 2, 3], "text": TEXTS, "label": ["gold1", "gold2", "gold3"]})
    src = tmp_path / "in.csv"
    source.to_csv(src, index=False)
    out = predictor.predict_file(src, tmp_path / "out.csv")
    frame = pd.read_csv(out)
    _check_predictions(frame, source)
    assert list(frame["id"]) == [1, 2, 3]
    assert list(frame["label"]) == ["gold1", "gold2", "gold3"]
    assert frame["predicted_label"].tolist() == [p["label"] for p in predictor.predict(TEXTS)]


def test_predict_file_jsonl(predictor, tmp_path: Path) -> None:
    source = pd.DataFrame({"review": TEXTS})
    src = tmp_path / "in.jsonl"
    source.to_json(src, orient="records", lines=True)
    out = predictor.predict_file(src, tmp_path / "out.jsonl", input_column="review")
    frame = pd.read_json(out, lines=True).rename(columns={"review": "text"})
    _check_predictions(frame, source.rename(columns={"review": "text"}))


def test_predict_file_never_overwrites(predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    out.write_text("precious")
    with pytest.raises(DataError, match="already exists"):
        predictor.predict_file(src, out)
    assert out.read_text() == "precious"


def test_predict_file_missing_column(predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pd.DataFrame({"body": TEXTS}).to_csv(src, index=False)
    with pytest.raises(DataError, match="no column 'text'"):
        predictor.predict_file(src, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_evaluate(predictor, toy_csv: Path) -> None:
    metrics = predictor.evaluate(toy_csv)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["num_examples"] == len(pd.read_csv(toy_csv))


def test_evaluate_unseen_label(predictor, tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    pd.DataFrame({"text": TEXTS, "label": ["pos", "neutral", "neg"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="'neutral'"):
        predictor.evaluate(path)
