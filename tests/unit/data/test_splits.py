"""load_splits: column mapping, seeded stratified splits, label parsing, every DataError and warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from transferkit.config import DataConfig
from transferkit.data import DatasetSplits, load_splits
from transferkit.errors import DataError


def _frame(counts: dict[str, int], text: str = "text", label: str = "label") -> pd.DataFrame:
    """Unique texts, ``counts[name]`` rows per label, labels interleaved."""
    rows = [(f"example {name} {i}", name) for name, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=[text, label]).sample(frac=1.0, random_state=0).reset_index(drop=True)


def _csv(tmp_path: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _texts(splits: DatasetSplits) -> list[set[str]]:
    return [set(splits.train["text"]), set(splits.validation["text"]), set(splits.test["text"])]


def test_column_mapping(tmp_path: Path) -> None:
    frame = _frame({"pos": 20, "neg": 20}, text="review", label="sentiment").assign(extra=1)
    cfg = DataConfig(train=_csv(tmp_path, "train.csv", frame), text_column="review", label_column="sentiment")
    splits = load_splits(cfg)
    for part in (splits.train, splits.validation, splits.test):
        assert list(part.columns) == ["text", "label"]
    assert splits.labels == ["neg", "pos"]
    assert splits.source == cfg.train


def test_missing_column_names_file_and_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "train.csv", _frame({"a": 5, "b": 5}))
    with pytest.raises(DataError) as err:
        load_splits(DataConfig(train=path, text_column="review"))
    assert str(err.value) == (
        f"{path}: no column 'review' (columns: text, label); set --text-column/--label-column"
    )


def test_split_is_seeded_stratified_and_disjoint(tmp_path: Path) -> None:
    frame = _frame({"a": 100, "b": 100})
    cfg = DataConfig(train=_csv(tmp_path, "train.csv", frame))
    first, again = load_splits(cfg), load_splits(cfg)
    for a, b in zip(
        (first.train, first.validation, first.test), (again.train, again.validation, again.test), strict=True
    ):
        pd.testing.assert_frame_equal(a, b)
    assert (len(first.train), len(first.validation), len(first.test)) == (160, 20, 20)
    assert first.validation["label"].value_counts().to_dict() == {"a": 10, "b": 10}
    assert first.test["label"].value_counts().to_dict() == {"a": 10, "b": 10}
    train, validation, test = _texts(first)
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == set(frame["text"])
    other = load_splits(DataConfig(train=cfg.train, split_seed=7))
    assert set(other.test["text"]) != test


def test_sizes_are_fractions_of_the_original_train(tmp_path: Path) -> None:
    cfg = DataConfig(
        train=_csv(tmp_path, "train.csv", _frame({"a": 50, "b": 50})), validation_size=0.2, test_size=0.3
    )
    splits = load_splits(cfg)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (50, 20, 30)


def test_given_files_are_not_split(tmp_path: Path) -> None:
    train = _csv(tmp_path, "train.csv", _frame({"a": 50, "b": 50}))
    test = _csv(tmp_path, "test.csv", _frame({"a": 3, "b": 4}).assign(text=lambda f: "t " + f["text"]))
    splits = load_splits(DataConfig(train=train, test=test))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (90, 10, 7)


def test_integer_labels_become_strings(tmp_path: Path) -> None:
    frame = _frame({"0": 10, "1": 10}).assign(label=lambda f: f["label"].astype(int))
    splits = load_splits(DataConfig(), frames={"train": frame})
    assert splits.labels == ["0", "1"]
    assert all(isinstance(v, str) for v in splits.train["label"])


def test_empty_text_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood,a\n   ,b\nfine,a\n,b\n")
    with pytest.raises(DataError) as err:
        load_splits(DataConfig(train=str(path)))
    assert str(err.value) == f"{path} row 2: empty text (and 1 more row); fill in the text or remove the row"


def test_missing_label_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood,a\nbad,b\nokay,\n")
    with pytest.raises(DataError, match=rf"^{path} row 3: missing label; fill in the label"):
        load_splits(DataConfig(train=str(path)))


def test_unseen_evaluation_labels_are_listed(tmp_path: Path) -> None:
    train = _csv(tmp_path, "train.csv", _frame({"a": 20, "b": 20}))
    test = tmp_path / "test.csv"
    test.write_text("text,label\nx,a\ny,c\nz,d\nw,c\n")
    with pytest.raises(DataError) as err:
        load_splits(DataConfig(train=train, test=str(test)))
    message = str(err.value)
    assert message.startswith(f"{test}: label(s) never seen in training: 'c' (row 2), 'd' (row 3);")
    assert "add training examples" in message


def test_unseen_labels_listed_up_to_five(tmp_path: Path) -> None:
    test = pd.DataFrame({"text": [f"t{i}" for i in range(7)], "label": [f"new{i}" for i in range(7)]})
    with pytest.raises(DataError, match=r"'new4' \(row 5\) and 2 more;"):
        load_splits(DataConfig(), frames={"train": _frame({"a": 20, "b": 20}), "test": test})


def test_one_class_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, "train.csv", _frame({"only": 30}))
    with pytest.raises(
        DataError, match=rf"^{path}: single_label needs at least two classes in training, found 'only'"
    ):
        load_splits(DataConfig(train=path))


def test_regression_labels_are_floats(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": [str(i / 2) for i in range(30)]})
    splits = load_splits(DataConfig(train=_csv(tmp_path, "train.csv", frame)), problem="regression")
    assert splits.labels == []
    assert splits.train["label"].dtype == float
    assert sorted(pd.concat([splits.train, splits.validation, splits.test])["label"]) == [
        i / 2 for i in range(30)
    ]


def test_regression_non_numeric_label(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,1.5\nb,-2\nc,lots\n")
    with pytest.raises(DataError, match=rf"^{path} row 3: label 'lots' is not a number"):
        load_splits(DataConfig(train=str(path)), problem="regression")


def test_multi_label_cells_are_split(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    rows = ["a|b", " b | ", "a||c", "c", "a|a"] * 6
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": rows}).to_csv(path, index=False)
    splits = load_splits(DataConfig(train=str(path)), problem="multi_label")
    assert splits.labels == ["a", "b", "c"]
    everything = pd.concat([splits.train, splits.validation, splits.test]).set_index("text")["label"]
    assert everything["t0"] == ["a", "b"]
    assert everything["t1"] == ["b"]
    assert everything["t2"] == ["a", "c"]
    assert everything["t4"] == ["a"]


def test_multi_label_from_lists_and_custom_separator(tmp_path: Path) -> None:
    train = pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": [["x", "y"], ["y"], [], ["x"]] * 5})
    test = pd.DataFrame({"text": ["u", "v"], "label": ["x;y", "y"]})
    cfg = DataConfig(label_separator=";")
    splits = load_splits(cfg, problem="multi_label", frames={"train": train, "test": test})
    assert splits.labels == ["x", "y"]
    assert splits.test["label"].tolist() == [["x", "y"], ["y"]]
    assert [] in splits.train["label"].tolist() + splits.validation["label"].tolist()


def test_multi_label_unseen(tmp_path: Path) -> None:
    train = pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": ["a|b", "b"] * 10})
    test = pd.DataFrame({"text": ["u", "v"], "label": ["a", "b|zz"]})
    with pytest.raises(
        DataError, match=r"DataFrame 'test': label\(s\) never seen in training: 'zz' \(row 2\)"
    ):
        load_splits(DataConfig(), problem="multi_label", frames={"train": train, "test": test})


def test_dataframes_with_column_mapping() -> None:
    train = _frame({"a": 30, "b": 30}, text="body", label="tag")
    validation = _frame({"a": 2, "b": 2}, text="body", label="tag").assign(body=lambda f: "v " + f["body"])
    splits = load_splits(
        DataConfig(text_column="body", label_column="tag"), frames={"train": train, "validation": validation}
    )
    assert splits.source == "DataFrame 'train'"
    assert len(splits.validation) == 4 and len(splits.train) + len(splits.test) == 60
    with pytest.raises(DataError, match=r"DataFrame 'train': no column 'text'"):
        load_splits(DataConfig(), frames={"train": train})


def test_frames_errors() -> None:
    with pytest.raises(DataError, match="no training data"):
        load_splits(DataConfig())
    with pytest.raises(DataError, match="unknown split"):
        load_splits(DataConfig(), frames={"dev": _frame({"a": 2})})
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        load_splits(DataConfig(), frames={"train": [1, 2]})  # type: ignore[dict-item]


def test_max_samples_are_seeded_and_stratified(tmp_path: Path) -> None:
    cfg = DataConfig(
        train=_csv(tmp_path, "train.csv", _frame({"a": 100, "b": 100})),
        max_train_samples=40,
        max_eval_samples=6,
    )
    first, again = load_splits(cfg), load_splits(cfg)
    assert len(first.train) == 40 and len(first.validation) == 6 and len(first.test) == 6
    assert first.train["label"].value_counts().to_dict() == {"a": 20, "b": 20}
    pd.testing.assert_frame_equal(first.train, again.train)
    # subsampling picks from the same split: the held-out examples do not change
    full = load_splits(cfg.model_copy(update={"max_train_samples": None, "max_eval_samples": None}))
    assert set(first.train["text"]) <= set(full.train["text"])
    assert set(first.test["text"]) <= set(full.test["text"])


def test_unstratifiable_subsample_falls_back_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="transferkit.data"):
        splits = load_splits(DataConfig(max_train_samples=1), frames={"train": _frame({"a": 20, "b": 20})})
    assert len(splits.train) == 1
    assert splits.labels == ["a", "b"]  # the label space comes from the whole training split
    assert "sampling without stratification" in caplog.text


def test_imbalance_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="transferkit.data"):
        load_splits(DataConfig(), frames={"train": _frame({"big": 120, "small": 20})})
    assert "imbalanced" in caplog.text and "class_weights=auto" in caplog.text
    assert "'big' has 96 examples, 'small' only 16" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="transferkit.data"):
        load_splits(DataConfig(), frames={"train": _frame({"a": 50, "b": 20})})
    assert "imbalanced" not in caplog.text


def test_shared_texts_warning(caplog: pytest.LogCaptureFixture) -> None:
    train = _frame({"a": 20, "b": 20})
    test = pd.concat([train.head(3), _frame({"a": 2}).assign(text=lambda f: "new " + f["text"])])
    validation = _frame({"a": 2, "b": 2}).assign(text=lambda f: "v " + f["text"])
    with caplog.at_level(logging.WARNING, logger="transferkit.data"):
        load_splits(DataConfig(), frames={"train": train, "validation": validation, "test": test})
    assert "3 test text(s) also appear in train" in caplog.text
    assert "deduplicate" in caplog.text
