"""Metrics checked against hand-computed values on tiny examples (never against scikit-learn itself)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import transferkit.evaluation
from transferkit.evaluation import (
    classification_metrics,
    format_metrics_table,
    greater_is_better,
    is_better,
    multilabel_metrics,
    primary_metric,
    regression_metrics,
)

SCALAR_CLASSIFICATION_KEYS = {
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_micro",
    "recall_micro",
    "f1_micro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "num_examples",
}


def f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def assert_plain_json(obj: object) -> None:
    """Only plain Python types, no NaN: a strict dump and reload round-trips exactly."""
    assert json.loads(json.dumps(obj, allow_nan=False)) == obj


# --- single-label classification ----------------------------------------------------------------


def test_binary_values_by_hand():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    # neg: TP=1 FP=0 FN=1 -> P=1, R=1/2;  pos: TP=2 FP=1 FN=0 -> P=2/3, R=1.
    f1_neg, f1_pos = f1(1.0, 0.5), f1(2 / 3, 1.0)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision_macro"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert m["recall_macro"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["f1_macro"] == pytest.approx((f1_neg + f1_pos) / 2)
    assert m["f1_macro"] == pytest.approx(11 / 15)
    # Single-label micro averages all equal accuracy; equal supports make weighted == macro.
    for key in ("precision_micro", "recall_micro", "f1_micro"):
        assert m[key] == pytest.approx(0.75)
    assert m["f1_weighted"] == pytest.approx(m["f1_macro"])
    assert m["num_examples"] == 4
    assert set(m) == SCALAR_CLASSIFICATION_KEYS | {"per_class", "confusion_matrix"}
    assert m["per_class"]["neg"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(f1_neg),
        "support": 2,
    }
    assert m["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["pos"]["support"] == 2
    assert m["confusion_matrix"] == {"labels": ["neg", "pos"], "matrix": [[1, 1], [0, 2]]}
    assert_plain_json(m)


def test_unseen_class_gets_row_and_counts_in_macro():
    m = classification_metrics([0, 1], [0, 0], ["a", "b", "c"])
    assert m["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert list(m["per_class"]) == ["a", "b", "c"]
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # a: P=1/2, R=1 -> F1=2/3; b and c: 0 (zero_division=0); macro over all 3 classes.
    assert m["f1_macro"] == pytest.approx((2 / 3) / 3)
    assert m["accuracy"] == pytest.approx(0.5)
    assert_plain_json(m)


def test_binary_probabilities_give_roc_auc_and_log_loss():
    p_pos = [0.1, 0.6, 0.4, 0.9]
    probs = np.array([[1 - p, p] for p in p_pos])
    m = classification_metrics([0, 0, 1, 1], [0, 1, 0, 1], ["neg", "pos"], probabilities=probs)
    # Positive/negative pairs ranked correctly: (0.4>0.1), (0.9>0.1), (0.9>0.6); wrong: (0.4<0.6).
    assert m["roc_auc"] == pytest.approx(3 / 4)
    expected_loss = -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.9)) / 4
    assert m["log_loss"] == pytest.approx(expected_loss)
    assert_plain_json(m)


def test_log_loss_with_classes_missing_from_split():
    probs = np.array([[0.8, 0.1, 0.1], [0.5, 0.25, 0.25]])
    m = classification_metrics([0, 0], [0, 0], ["a", "b", "c"], probabilities=probs)
    assert m["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.5)) / 2)
    assert "roc_auc" not in m  # only for two classes
    assert_plain_json(m)


def test_roc_auc_left_out_when_only_one_class_present():
    probs = np.array([[0.9, 0.1], [0.7, 0.3]])
    m = classification_metrics([0, 0], [0, 0], ["neg", "pos"], probabilities=probs)
    assert "roc_auc" not in m
    assert m["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.7)) / 2)
    assert_plain_json(m)


def test_numpy_inputs_become_plain_python():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["x", "y"], np.full((3, 2), 0.5))
    assert type(m["accuracy"]) is float
    assert type(m["num_examples"]) is int
    assert type(m["per_class"]["x"]["support"]) is int
    assert type(m["confusion_matrix"]["matrix"][0][0]) is int
    assert_plain_json(m)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "kwargs", "match"),
    [
        ([0, 1], [0], {}, "examples"),
        ([], [], {}, "zero examples"),
        ([0, 2], [0, 1], {}, "outside"),
        ([0, 1], [0, -1], {}, "outside"),
        ([0, 1], [0, 1], {"probabilities": np.full((2, 3), 1 / 3)}, "shape"),
    ],
)
def test_classification_rejects_bad_input(y_true, y_pred, kwargs, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y_true, y_pred, ["a", "b"], **kwargs)


# --- multi-label ---------------------------------------------------------------------------------


def test_multilabel_values_by_hand():
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 0]])
    m = multilabel_metrics(y_true, y_pred, ["red", "green", "blue"])
    assert m["accuracy"] == pytest.approx(0.5)  # only the second row is exactly right
    assert m["hamming_loss"] == pytest.approx(1 / 6)  # one wrong cell out of six
    # red, green: perfect; blue: never predicted -> P=R=F1=0.
    assert m["f1_macro"] == pytest.approx(2 / 3)
    assert m["precision_macro"] == pytest.approx(2 / 3)
    # micro: TP=2, FP=0, FN=1 -> P=1, R=2/3.
    assert m["precision_micro"] == pytest.approx(1.0)
    assert m["recall_micro"] == pytest.approx(2 / 3)
    assert m["f1_micro"] == pytest.approx(f1(1.0, 2 / 3))
    assert m["f1_weighted"] == pytest.approx(2 / 3)  # supports 1, 1, 1
    # samples: row 1 P=1, R=1/2 -> F1=2/3; row 2 F1=1.
    assert m["f1_samples"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["recall_samples"] == pytest.approx(0.75)
    assert m["num_examples"] == 2
    assert m["per_class"]["blue"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["red"]["f1"] == pytest.approx(1.0)
    for average in ("macro", "micro", "weighted", "samples"):
        assert {f"precision_{average}", f"recall_{average}", f"f1_{average}"} <= set(m)
    assert_plain_json(m)


def test_multilabel_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 3)), ["only", "two"])


# --- regression ----------------------------------------------------------------------------------


def test_regression_values_by_hand():
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert m["mae"] == pytest.approx(1 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert m["r2"] == pytest.approx(1 - 1 / 2)  # SS_res = 1, SS_tot = 2
    assert m["num_examples"] == 3
    assert_plain_json(m)


@pytest.mark.parametrize(("y_true", "y_pred"), [([2.0], [3.0]), ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])])
def test_regression_r2_is_zero_when_undefined(y_true, y_pred):
    m = regression_metrics(y_true, y_pred)
    assert m["r2"] == 0.0
    assert_plain_json(m)


def test_regression_rejects_empty():
    with pytest.raises(ValueError):
        regression_metrics([], [])


# --- choosing the best checkpoint ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("single_label", ("f1_macro", True)),
        ("multi_label", ("f1_macro", True)),
        ("regression", ("rmse", False)),
    ],
)
def test_primary_metric(problem, expected):
    assert primary_metric(problem) == expected


def test_primary_metric_unknown_problem():
    with pytest.raises(ValueError, match="unknown problem"):
        primary_metric("ranking")


@pytest.mark.parametrize(
    ("metric", "new", "best", "expected"),
    [
        ("f1_macro", 0.8, None, True),
        ("rmse", 5.0, None, True),
        ("f1_macro", 0.8, 0.7, True),
        ("f1_macro", 0.7, 0.8, False),
        ("f1_macro", 0.8, 0.8, False),  # ties do not replace the best checkpoint
        ("accuracy", 0.9, 0.1, True),
        ("loss", 0.3, 0.4, True),
        ("validation.loss", 0.5, 0.4, False),
        ("log_loss", 0.3, 0.4, True),
        ("mae", 1.0, 2.0, True),
        ("rmse", 3.0, 2.0, False),
        ("mse", 1.0, 2.0, True),
        ("hamming_loss", 0.1, 0.2, True),
        ("perplexity", 12.0, 10.0, False),
        ("r2", 0.5, 0.4, True),
        ("f1_macro", float("nan"), None, False),
        ("f1_macro", 0.1, float("nan"), True),
    ],
)
def test_is_better(metric, new, best, expected):
    assert is_better(metric, new, best) is expected


def test_greater_is_better_table():
    assert greater_is_better("f1_macro") and greater_is_better("roc_auc")
    assert not greater_is_better("RMSE") and not greater_is_better("train_loss")


# --- table ---------------------------------------------------------------------------------------


def render(table) -> str:
    console = Console(record=True, width=250, color_system=None)
    console.print(table)
    return console.export_text()


def test_format_metrics_table_rows_columns_and_decimals():
    validation = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    test = classification_metrics([0, 1, 1], [0, 1, 1], ["neg", "pos"])
    table = format_metrics_table(
        {"validation": validation, "test": test, "pretrained_baseline": {"test": validation}}
    )
    headers = [column.header for column in table.columns]
    assert headers[0] == "split"
    assert set(headers[1:]) == SCALAR_CLASSIFICATION_KEYS  # per_class / confusion_matrix skipped
    assert table.row_count == 3
    text = render(table)
    assert "pretrained_baseline.test" in text
    assert "0.7333" in text and "1.0000" in text
    assert "per_class" not in text


def test_format_metrics_table_explicit_keys_and_missing_values():
    table = format_metrics_table(
        {"validation": {"accuracy": 0.5, "num_examples": 10}, "test": {"num_examples": 4}},
        keys=["accuracy", "num_examples"],
    )
    assert [column.header for column in table.columns] == ["split", "accuracy", "num_examples"]
    text = render(table)
    assert "0.5000" in text and " 10 " in text
    test_row = next(line for line in text.splitlines() if " test " in line)
    assert "-" in test_row  # no accuracy in that split


def test_importing_evaluation_does_not_import_heavy_libraries():
    src = Path(transferkit.evaluation.__file__).parents[2]
    code = (
        "import sys, transferkit.evaluation; "
        "heavy = [m for m in ('sklearn', 'matplotlib', 'rich') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(src)})
