"""The one split every task shares (data/split.py): sizes of the whole file, one seeded draw, across tasks.

Each example carries its 0-based position in the training file (text ``t7``, words ``w7``, prompt ``p7``,
image ``file.npz#7``), so the tests compare which positions land in each part, task against task.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from transferkit.config import DataConfig, RunConfig, load_config
from transferkit.data import load_splits
from transferkit.data.split import hold_out, subsample
from transferkit.errors import DataError
from transferkit.tasks.generation.sources import load_generation_splits
from transferkit.tasks.image_classification.sources import load_image_splits
from transferkit.tasks.token_classification.sources import load_token_splits

PARTS = ("train", "validation", "test")
UNSTRATIFIED = ("multi_label", "regression", "tokens", "generation")


def _labels(n: int) -> list[str]:
    return ["a" if i % 3 else "b" for i in range(n)]  # two classes, 2:1


def _config(task: str, n: int, overrides: list[str]) -> RunConfig:
    task_type = {
        "tokens": "token-classification",
        "generation": "generation",
        "images": "image-classification",
    }
    items = ["data.train=x", *overrides]
    if task in task_type:
        items.append(f"task.type={task_type[task]}")
    return load_config(None, items)


def _positions(task: str, n: int, tmp_path: Path, overrides: list[str] = ()) -> dict[str, list[int]]:
    """Positions in the training file of each part, for ``n`` training examples of ``task``."""
    cfg = _config(task, n, list(overrides))
    if task in ("single_label", "multi_label", "regression"):
        label = {"single_label": _labels(n), "multi_label": [["a", "b"][: 1 + i % 2] for i in range(n)]}
        frame = pd.DataFrame(
            {"text": [f"t{i}" for i in range(n)], "label": label.get(task, np.arange(n) / n)}
        )
        splits = load_splits(cfg.data, task, {"train": frame})
        return {p: [int(t[1:]) for t in getattr(splits, p)["text"]] for p in PARTS}
    if task == "images":
        rng = np.random.default_rng(0)
        path = tmp_path / "train.npz"
        np.savez(path, x=rng.integers(0, 255, size=(n, 8, 8)).astype(np.uint8), y=np.array(_labels(n)))
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"train": str(path)})})
        splits = load_image_splits(cfg)
        return {p: [int(ref.split("#")[1]) for ref in getattr(splits, p)["text"]] for p in PARTS}
    if task == "tokens":
        frame = pd.DataFrame({"tokens": [[f"w{i}", "Ann"] for i in range(n)], "tags": [["O", "B-PER"]] * n})
        splits = load_token_splits(cfg, {"train": frame})
        return {p: [int(words[0][1:]) for words in getattr(splits, p)["tokens"]] for p in PARTS}
    frame = pd.DataFrame({"prompt": [f"p{i}" for i in range(n)], "completion": [" x"] * n})
    examples, _ = load_generation_splits(cfg, {"train": frame})
    return {p: [int(e.prompt[1:]) for e in examples[p]] for p in PARTS}


@pytest.mark.parametrize("n", [50, 203])
@pytest.mark.parametrize("task", ["single_label", "images", *UNSTRATIFIED])
def test_sizes_are_fractions_of_the_whole_training_file(task: str, n: int, tmp_path: Path) -> None:
    parts = _positions(task, n, tmp_path, ["data.validation_size=0.1", "data.test_size=0.1"])
    tenth = math.ceil(0.1 * n)
    assert [len(parts[p]) for p in PARTS] == [n - 2 * tenth, tenth, tenth]
    assert sorted(sum(parts.values(), [])) == list(range(n))  # disjoint and complete


def test_the_same_positions_land_in_each_part_for_every_unstratified_task(tmp_path: Path) -> None:
    for overrides in ([], ["data.split_seed=3", "data.validation_size=0.2", "data.test_size=0.15"]):
        first, *others = (_positions(task, 60, tmp_path, overrides) for task in UNSTRATIFIED)
        for other in others:
            assert other == first  # same members, same order


def test_max_samples_keep_the_same_positions_for_every_unstratified_task(tmp_path: Path) -> None:
    limits = ["data.max_train_samples=20", "data.max_eval_samples=4"]
    first, *others = (_positions(task, 60, tmp_path, limits) for task in UNSTRATIFIED)
    assert [len(first[p]) for p in PARTS] == [20, 4, 4]
    for other in others:
        assert other == first
    full = _positions("tokens", 60, tmp_path)
    assert all(set(first[p]) <= set(full[p]) for p in PARTS)  # a subsample of the same split


def test_images_split_like_text_with_the_same_labels(tmp_path: Path) -> None:
    assert _positions("images", 90, tmp_path) == _positions("single_label", 90, tmp_path)


@pytest.mark.parametrize("task", ["single_label", "images", *UNSTRATIFIED])
def test_another_seed_gives_another_split(task: str, tmp_path: Path) -> None:
    a = _positions(task, 80, tmp_path)
    b = _positions(task, 80, tmp_path, ["data.split_seed=7"])
    assert _positions(task, 80, tmp_path) == a
    assert set(a["validation"]) != set(b["validation"]) and set(a["test"]) != set(b["test"])


def test_text_split_is_scikit_learns_seeded_stratified_draw() -> None:
    """The text split is what it always was: test off the whole file, then validation off the rest."""
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": _labels(100)})
    splits = load_splits(DataConfig(split_seed=5), frames={"train": frame})
    rest, test = train_test_split(frame, test_size=0.1, random_state=5, stratify=frame["label"])
    train, validation = train_test_split(rest, test_size=10, random_state=5, stratify=rest["label"])
    for got, want in ((splits.train, train), (splits.validation, validation), (splits.test, test)):
        assert list(got["text"]) == list(want["text"])


def test_a_given_part_is_not_split_and_the_other_keeps_its_size() -> None:
    parts = hold_out(40, None, 0.25, seed=0)
    assert parts.validation is None and len(parts.test) == 10 and len(parts.train) == 30
    parts = hold_out(40, 0.25, None, seed=0)
    assert parts.test is None and len(parts.validation) == 10


def test_too_few_examples_name_the_source() -> None:
    with pytest.raises(DataError) as err:
        hold_out(2, 0.5, 0.5, seed=0, source="data/x.jsonl", unit="sentence(s)")
    assert str(err.value).startswith(
        "data/x.jsonl: only 1 sentence(s) left, too few to split off the validation set"
    )
    assert str(err.value).endswith("; give a validation file or more data")


def test_unstratifiable_draws_fall_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    labels = ["a"] * 19 + ["b"]  # one "b": too rare to stratify
    with caplog.at_level(logging.WARNING, logger="transferkit.data"):
        parts = hold_out(20, 0.1, 0.1, seed=0, labels=labels)
        kept = subsample(20, 1, seed=0, labels=labels)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (16, 2, 2)
    assert (
        "cannot stratify the test split" in caplog.text and "sampling without stratification" in caplog.text
    )
    unstratified = hold_out(20, 0.1, 0.1, seed=0)
    assert [list(getattr(parts, p)) for p in PARTS] == [list(getattr(unstratified, p)) for p in PARTS]
    assert list(kept) == list(subsample(20, 1, seed=0))
