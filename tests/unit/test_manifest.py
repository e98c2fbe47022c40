"""The run manifest (``RUN/labels.json``): typed, versioned, and every folder written before still loads.

``tests/fixtures/text_classification_v1`` holds the metadata of a tiny-bert text-classification run written
by transferkit before the manifest was typed (manifest version 1): config.yaml, labels.json, metrics.json,
README.md and model/config.json. The weights (4 MB) are not committed; the load test borrows them from the
session's tiny run (same backbone, same labels).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from transferkit.artifacts import read_run
from transferkit.errors import RunError
from transferkit.manifest import (
    MANIFEST_FILE,
    MANIFEST_VERSION,
    GenerationFields,
    ImagePreprocess,
    RunManifest,
    TextFields,
    TokenFields,
    read_manifest,
    write_manifest,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "text_classification_v1"

# What each task's fit wrote as labels.json before version 2 (the writers' keys at commit 11e89df).
V1_FILES = {
    "token-classification": {
        "labels": ["O", "B-PER", "I-PER"], "task": "token-classification", "scheme": "bioes",
        "max_length": 128, "stride": 16,
    },
    "image-classification": {
        "labels": ["left", "right"], "task": "image-classification", "problem": "single_label",
        "preprocess": {"kind": "resize", "size": [32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    },
    "generation": {
        "labels": [], "task": "generation", "max_length": 64,
        "generation": {"chat_template": True, "add_eos": False, "max_new_tokens": 8},
    },
}  # fmt: skip


def _write(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).write_text(json.dumps(data))
    return folder


def test_fixture_written_by_the_old_code_reads_as_version_1() -> None:
    manifest = read_manifest(FIXTURE)
    assert manifest.manifest_version == 1
    assert (manifest.task, manifest.problem, manifest.labels) == (
        "text-classification",
        "single_label",
        ["neg", "pos"],
    )
    assert manifest.max_length == 256 and manifest.text == TextFields(pooling="mean")
    assert manifest.tokens is manifest.preprocess is manifest.generation is None
    path, via_run, metrics = read_run(FIXTURE)
    assert path == FIXTURE and via_run == manifest and "test" in metrics


def test_fixture_run_loads_and_predicts(tiny_run, tmp_path: Path) -> None:
    import transferkit

    run = shutil.copytree(FIXTURE, tmp_path / "old_run")
    shutil.rmtree(run / "model")
    shutil.copytree(tiny_run.run_dir / "model", run / "model")
    model = transferkit.load(run)
    assert model.labels == ["neg", "pos"] and model.max_length == 256
    (pred,) = model.predict(["a wonderful film"])
    assert pred["label"] in ("neg", "pos") and set(pred["scores"]) == {"neg", "pos"}


def test_every_task_of_version_1_migrates(tmp_path: Path) -> None:
    read = {task: read_manifest(_write(tmp_path / task, data)) for task, data in V1_FILES.items()}
    assert read["token-classification"].tokens == TokenFields(scheme="bioes", stride=16)
    assert read["token-classification"].problem == "single_label"  # never written, the default
    assert read["image-classification"].preprocess == ImagePreprocess(
        kind="resize", size=[32, 32], mean=[0.5] * 3, std=[0.25] * 3
    )
    assert read["generation"].generation == GenerationFields(
        chat_template=True, add_eos=False, max_new_tokens=8
    )
    assert all(m.manifest_version == 1 for m in read.values())


def test_write_then_read_round_trips_as_the_current_version(tmp_path: Path) -> None:
    manifest = RunManifest(
        task="token-classification", labels=["O", "B-LOC"], max_length=64, tokens=TokenFields(stride=8)
    )
    write_manifest(tmp_path, manifest)
    on_disk = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert on_disk == {
        "manifest_version": MANIFEST_VERSION, "task": "token-classification", "problem": "single_label",
        "labels": ["O", "B-LOC"], "max_length": 64, "tokens": {"scheme": "iob2", "stride": 8}, "precision": "fp32",
    }  # fmt: skip
    assert read_manifest(tmp_path) == manifest


def test_a_migrated_manifest_is_written_back_in_todays_layout(tmp_path: Path) -> None:
    write_manifest(tmp_path, read_manifest(FIXTURE))
    on_disk = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert on_disk["manifest_version"] == MANIFEST_VERSION and on_disk["text"] == {"pooling": "mean"}
    assert "pooling" not in on_disk


def test_unknown_top_level_keys_are_kept(tmp_path: Path) -> None:
    data = {"manifest_version": MANIFEST_VERSION, "task": "my-task", "labels": ["a"], "window": 3}
    manifest = read_manifest(_write(tmp_path, data))
    assert manifest.model_extra == {"window": 3}
    write_manifest(tmp_path, manifest)
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["window"] == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"manifest_version": 99, "task": "text-classification"}, "upgrade transferkit"),
        ({"manifest_version": 2, "labels": "neg,pos"}, "labels"),
        ({"manifest_version": 2, "tokens": {"stride": -1}}, r"tokens\.stride"),
        ({"manifest_version": 2, "text": {"pooling": "mean", "typo": 1}}, r"text\.typo"),
        ({"preprocess": {"kind": "resize"}}, "needs size, mean and std"),
    ],
)
def test_invalid_manifests_are_refused_with_the_field(tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(RunError, match=message):
        read_manifest(_write(tmp_path, data))


def test_missing_or_broken_file_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="missing"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(RunError, match="unreadable"):
        read_manifest(tmp_path)
