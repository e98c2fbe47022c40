"""The task matrix: every registered task gets a case, and the same columns are checked per task, on tiny
random models: fit -> save -> load -> predict -> evaluate -> predict_file; resume after an interruption equals
an uninterrupted run; ONNX export + reload where the task's spec names an exporter; a serving adapter exists;
the predictor keeps the one contract (:class:`~transferkit.predictors.BasePredictor`) with its columns renamed.

Adding a task means registering its spec and adding a case to ``CASES``: a registered task without one fails
every column.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import transferkit
from transferkit.errors import TransferkitError
from transferkit.predictors import BasePredictor
from transferkit.tasks import task_names, task_spec

RUN = ["training.progress=false", "output.tensorboard=false", "training.max_steps=4",
       "training.checkpoint_every_steps=2", "training.keep_checkpoints=5", "training.learning_rate=1e-3"]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """How one task is exercised: its data files, a few raw inputs, and its settings."""

    backbone: str
    write: Callable[
        [Path], Path
    ]  # folder -> the labelled file (train = validation = test: tiny, deterministic)
    inputs: Callable[[Path], list]  # folder -> what predict() takes
    predict_input: Callable[[Path], Path]  # folder -> the unlabelled file predict_file() reads
    columns: tuple[str, str]  # the task's default input and label columns (input_column / label_column=None)
    overrides: tuple[str, ...] = ()


def _text(folder: Path) -> Path:
    rows = [(f"the {w} film {i}", lab) for i in range(12) for w, lab in (("great", "pos"), ("awful", "neg"))]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / "data.csv", index=False)
    return folder / "data.csv"


def _text_unlabelled(folder: Path) -> Path:
    pd.DataFrame({"text": ["a great one", "an awful one"]}).to_csv(folder / "new.csv", index=False)
    return folder / "new.csv"


def _tokens(folder: Path) -> Path:
    rows = [{"tokens": ["Ann", "met", "Bob", "in", "Rome"], "tags": ["B-PER", "O", "B-PER", "O", "B-LOC"]},
            {"tokens": ["Rome", "is", "far"], "tags": ["B-LOC", "O", "O"]}] * 12  # fmt: skip
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        label = ("dark", "light")[i % 2]
        pixels = rng.integers(0, 90, (24, 24, 3)) + (150 if label == "light" else 0)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
        rows.append((f"{i}.png", label))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(folder / "data.csv", index=False)
    return folder / "data.csv"


def _images_unlabelled(folder: Path) -> Path:
    pd.DataFrame({"path": ["0.png", "1.png"]}).to_csv(folder / "new.csv", index=False)
    return folder / "new.csv"


def _pairs(folder: Path) -> Path:
    rows = [{"prompt": f"Q{i}: the capital of Zorbia?", "completion": " Quxville"} for i in range(16)]
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prompts(folder: Path) -> Path:
    path = folder / "new.jsonl"
    path.write_text(json.dumps({"prompt": "Q9: the capital of Zorbia?"}) + "\n")
    return path


CASES: dict[str, Case] = {
    "text-classification": Case(
        "tiny-bert", _text, lambda f: ["a great film"], _text_unlabelled, ("text", "label")
    ),
    "token-classification": Case(
        "tiny-bert", _tokens, lambda f: ["Ann met Bob in Rome"], _tokens, ("tokens", "tags")
    ),
    "image-classification": Case(
        "tiny-efficientnet",
        _images,
        lambda f: [str(f / "0.png")],
        _images_unlabelled,
        ("path", "label"),
        ("image.image_size=32",),
    ),  # fmt: skip
    "generation": Case(
        "tiny-llama",
        _pairs,
        lambda f: ["Q9: the capital of Zorbia?"],
        _prompts,
        ("prompt", "completion"),
        ("generation.eval_samples=2", "generation.max_new_tokens=3"),
    ),  # fmt: skip
}


def _case(task: str) -> Case:
    if task not in CASES:
        pytest.fail(f"task {task!r} is registered but has no case in CASES ({__file__})")
    return CASES[task]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(task)``: (data folder, labelled file, finished run) for a task, made once."""
    done: dict = {}

    def get(task: str):
        if task not in done:
            case = _case(task)
            folder = tmp_path_factory.mktemp(task)
            data = case.write(folder)
            files = [f"data.{s}={data}" for s in ("train", "validation", "test")]
            run = transferkit.fit(
                task=task, backbone=case.backbone, strategy="full", output=str(folder / "run"),
                overrides=[*RUN, *files, *case.overrides],
            )  # fmt: skip
            done[task] = (folder, data, run)
        return done[task]

    return get


def test_every_registered_task_has_a_case() -> None:
    assert not set(task_names()) - CASES.keys() and not CASES.keys() - set(task_names())


@pytest.mark.parametrize("task", task_names())
def test_fit_save_load_predict_evaluate_predict_file(task: str, runs) -> None:
    folder, data, run = runs(task)
    assert run.metrics["task"] == task and run.metrics["training"]["steps"] == 4
    model = transferkit.load(run.run_dir)
    assert model.task == task
    preds = model.predict(_case(task).inputs(folder))
    assert len(preds) == 1
    scores = model.evaluate(data)
    recorded = run.metrics["test"]
    shared = [k for k in ("accuracy", "f1_macro", "f1", "perplexity") if k in recorded and k in scores]
    assert shared, (sorted(recorded), sorted(scores))
    for key in shared:  # the reloaded model scores what fit recorded for the same rows
        assert scores[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-6), key
    out = model.predict_file(_case(task).predict_input(folder), folder / "predictions.jsonl")
    assert out.is_file() and out.stat().st_size > 0


def _renamed(path: Path, names: dict[str, str]) -> Path:
    """A copy of a CSV / JSONL file beside it (image paths stay relative to it) with columns renamed."""
    out = path.with_name(f"renamed-{path.name}")
    if path.suffix == ".csv":
        pd.read_csv(path).rename(columns=names).to_csv(out, index=False)
    else:
        pd.read_json(path, lines=True).rename(columns=names).to_json(out, orient="records", lines=True)
    return out


def _measured(metrics: dict) -> dict:
    """Metrics without throughput (measured, not computed)."""
    return {k: v for k, v in metrics.items() if not k.endswith("_per_second")}


@pytest.mark.parametrize("task", task_names())
def test_predictor_keeps_the_one_contract(task: str, runs) -> None:
    """Every predictor is a BasePredictor whose evaluate / predict_file take (path, input_column,
    label_column) / (path, output, input_column), None meaning the task's own columns."""
    folder, data, run = runs(task)
    model = transferkit.load(run.run_dir)
    assert isinstance(model, BasePredictor)
    assert (
        model.task == task
        and Path(model.run_dir).resolve() == Path(run.run_dir).resolve()
        and isinstance(model.labels, list)
    )
    assert model.metrics["task"] == task
    for method, names in (
        (model.evaluate, ["path", "input_column", "label_column"]),
        (model.predict_file, ["path", "output", "input_column"]),
    ):
        params = list(inspect.signature(method).parameters.values())[: len(names)]
        assert [p.name for p in params] == names, method
        assert all(p.default is None for p in params if p.name.endswith("_column")), method
    text, label = _case(task).columns
    renamed = _renamed(data, {text: "x", label: "y"})
    assert _measured(model.evaluate(renamed, "x", "y")) == _measured(model.evaluate(data, None, None))
    by_name = model.evaluate(renamed, input_column="x", label_column="y")
    assert _measured(by_name) == _measured(model.evaluate(data))
    unlabelled = _case(task).predict_input(folder)
    out = model.predict_file(_renamed(unlabelled, {text: "x"}), folder / "renamed.jsonl", input_column="x")
    rows = pd.read_json(out, lines=True)
    assert len(rows) == len(
        pd.read_json(model.predict_file(unlabelled, folder / "default.jsonl"), lines=True)
    )
    with pytest.raises(TransferkitError, match="'x'"):
        model.predict_file(unlabelled, folder / "missing.jsonl", input_column="x")


@pytest.mark.parametrize("task", task_names())
def test_cli_predict_and_evaluate_every_task_alike(task: str, runs, capsys) -> None:
    """``transferkit evaluate`` / ``predict`` with the column flags (``--path-column`` for image runs,
    ``--text-column`` otherwise) on renamed columns; ``--input`` without ``--output`` prints its rows."""
    from transferkit.cli.main import main

    folder, data, run = runs(task)
    text, label = _case(task).columns
    flag = "--path-column" if task_spec(task).inputs == "image" else "--text-column"
    renamed = _renamed(data, {text: "x", label: "y"})
    report = folder / "cli-metrics.json"
    assert main(["-q", "evaluate", str(run.run_dir), "--data", str(renamed), flag, "x", "--label-column", "y",
                 "--output", str(report)]) == 0  # fmt: skip
    expected = _measured(transferkit.load(run.run_dir).evaluate(data))
    assert _measured(json.loads(report.read_text())) == expected
    unlabelled = _renamed(_case(task).predict_input(folder), {text: "x"})
    capsys.readouterr()
    assert main(["-q", "predict", str(run.run_dir), "--input", str(unlabelled), flag, "x"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = pd.read_json(unlabelled, lines=True) if unlabelled.suffix == ".jsonl" else pd.read_csv(unlabelled)
    # each input row, with its prediction columns added
    assert len(printed) == len(rows) and all(set(r) > set(rows.columns) for r in printed)
    given = "--image" if task_spec(task).inputs == "image" else "--text"
    assert main(["-q", "predict", str(run.run_dir), given, str(_case(task).inputs(folder)[0])]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize("task", task_names())
def test_resume_equals_uninterrupted(task: str, runs, interrupted_copy, tmp_path: Path) -> None:
    _, _, whole = runs(task)
    cut = interrupted_copy(whole.run_dir, tmp_path / "cut", 2)
    resumed = transferkit.fit(resume=cut)
    assert resumed.metrics["training"]["resumed_from_step"] == 2
    for split in ("validation", "test"):
        a, b = whole.metrics[split], resumed.metrics[split]
        numbers = [k for k, v in a.items() if isinstance(v, int | float) and not isinstance(v, bool)
                   and not k.endswith("_per_second")]  # throughput is measured, not computed  # fmt: skip
        assert numbers
        off = {k: (a[k], b[k]) for k in numbers if abs(a[k] - b[k]) > 1e-6}
        assert not off, f"{task} {split}: {off}"


@pytest.mark.parametrize("task", task_names())
def test_export_and_reload_where_the_task_exports(task: str, runs, tmp_path: Path) -> None:
    spec = task_spec(task)
    if spec.onnx_exporter is None:
        pytest.skip(f"N/A for {task}: its spec names no ONNX exporter")
    from transferkit.compression.export import export_run

    folder, data, run = runs(task)
    exported = transferkit.load(export_run(run.run_dir, tmp_path / "onnx"))
    original = transferkit.load(run.run_dir, precision="fp32")  # the ONNX graph is fp32, whatever the run's
    assert isinstance(exported, type(original)) and isinstance(exported, BasePredictor)
    inputs = _case(task).inputs(folder)
    assert _rounded(exported.predict(inputs)) == _rounded(original.predict(inputs))
    a, b = exported.evaluate(data), original.evaluate(data)
    key = "f1_macro" if "f1_macro" in b else "f1"
    assert a[key] == pytest.approx(b[key], abs=1e-6)


def _rounded(x):
    """Predictions with scores rounded (onnxruntime and PyTorch agree to ~1e-6, not bit for bit)."""
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_rounded(v) for v in x]
    return x


@pytest.mark.parametrize("task", task_names())
def test_a_serving_adapter_exists(task: str) -> None:
    from transferkit.serving.adapters import ADAPTERS

    assert task in ADAPTERS


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("task", task_names())
def test_every_task_trains_and_predicts_at_each_precision(task: str, precision: str, tmp_path: Path) -> None:
    """The precision column: a run records the precision it trained and evaluated at (metrics.json and the
    manifest), ``load`` predicts at it by default, and the reloaded model scores what fit recorded."""
    case = _case(task)
    data = case.write(tmp_path)
    files = [f"data.{s}={data}" for s in ("train", "validation", "test")]
    run = transferkit.fit(
        task=task, backbone=case.backbone, strategy="full", output=str(tmp_path / "run"),
        overrides=[*RUN, "training.max_steps=2", f"training.precision={precision}", *files, *case.overrides],
    )  # fmt: skip
    assert run.metrics["training"]["precision"] == {
        "name": precision, "requested": precision, "reason": run.metrics["training"]["precision"]["reason"],
    }  # fmt: skip
    assert json.loads((run.run_dir / "labels.json").read_text())["precision"] == precision
    model = transferkit.load(run.run_dir)
    assert model.precision.name == precision
    scores, recorded = model.evaluate(data), run.metrics["test"]
    for key in (k for k in ("accuracy", "f1_macro", "f1", "perplexity") if k in recorded and k in scores):
        assert scores[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-6), key
    assert transferkit.load(run.run_dir, precision="fp32").precision.name == "fp32"


def test_fp16_without_a_cuda_device_is_refused_in_one_line(tmp_path: Path) -> None:
    case = _case("text-classification")
    data = case.write(tmp_path)
    with pytest.raises(TransferkitError, match=r"fp16 needs a CUDA device.*use bf16, fp32 or auto"):
        transferkit.fit(
            train=str(data), backbone=case.backbone, output=str(tmp_path / "run"),
            overrides=[*RUN, "training.precision=fp16"],
        )  # fmt: skip
    assert not (tmp_path / "run").exists()  # refused before a run folder was made
