"""build_report on synthetic compare folders: the files, a self-contained page, the warnings, the numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from compare_synthetic import arms, write_compare
from transferkit.cli.main import main
from transferkit.comparison.report import build_report
from transferkit.errors import RunError

BOOT = 300  # replicates: enough for the assertions, fast on two cores


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = write_compare(tmp_path_factory.mktemp("good"))
    return folder, build_report(folder, n_boot=BOOT)


def test_writes_html_markdown_and_plots(good) -> None:
    folder, summary = good
    assert (
        Path(summary["html"]) == folder / "report.html" and Path(summary["markdown"]) == folder / "report.md"
    )
    for name in ("curves", "time", "gains", "confusion"):
        path = Path(summary["plots"][name])
        assert path.parent == folder / "plots" and path.stat().st_size > 5_000
    md = (folder / "report.md").read_text()
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (folder / link).is_file()
    assert "plots/curves.png" in md
    assert not list(folder.glob(".*tmp*")) and not list((folder / "plots").glob(".*tmp*"))  # atomic writes


def test_html_is_self_contained_and_embeds_the_plots(good) -> None:
    folder, _ = good
    page = (folder / "report.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert not re.search(r"https?://", page)
    assert len(re.findall(r"<img [^>]*src='data:image/png;base64,", page)) == 4
    assert "@import" not in page and "<script" not in page


def test_summary_numbers(good) -> None:
    _, summary = good
    assert summary["counts"] == {"done": 36}
    rows = {r["budget"]: r for r in summary["gains"]}
    assert set(rows) == {8, 64, "all"}
    assert all(r["strategy"] == "lp-ft" and r["chosen_by"] == "validation" for r in rows.values())
    at8 = rows[8]["vs"]["scratch"]
    assert at8["method"] == "seeds x test examples" and at8["low"] < 0.25 < at8["high"]  # 0.80 - 0.55
    assert rows[8]["vs"]["classical"]["baseline"] == "tfidf+lr"
    assert summary["warnings"] == [] and "NEGATIVE" not in summary["verdict"].upper()
    assert "lp-ft reaches scratch's best with 8 per class" in summary["verdict"]
    # the best strategy is chosen on validation, and the verdict says so beside its test score
    assert "lp-ft is the best transfer strategy on validation (test 0.8" in summary["verdict"]
    curve = {p["budget"]: p for p in summary["curves"]["lp-ft"]}
    assert curve["all"]["size"] == pytest.approx(500.0) and curve[8]["size"] == pytest.approx(8.0)
    assert summary["best_cell"].startswith("lp-ft-ball")
    json.dumps(summary, allow_nan=False)  # compare may save it


def test_negative_transfer_is_warned(tmp_path: Path) -> None:
    folder = write_compare(tmp_path, arms(transfer=0.4, scratch=0.8))
    summary = build_report(folder, n_boot=BOOT)
    assert len(summary["warnings"]) == 3 and all("negative transfer" in w for w in summary["warnings"])
    assert "NEGATIVE TRANSFER" in summary["verdict"]
    assert "WARNING: " in (folder / "report.html").read_text()
    assert "**WARNING:**" in (folder / "report.md").read_text()


def test_mean_below_scratch_without_a_clear_interval(tmp_path: Path) -> None:
    table = {"lp-ft": ("transfer", {8: 0.6}), "scratch": ("scratch", {8: 0.6})}
    folder = write_compare(tmp_path, table, seeds=(0, 1), predictions=False)
    results = json.loads((folder / "results.json").read_text())
    tests = {"lp-ft-b8-s0": 0.60, "lp-ft-b8-s1": 0.70, "scratch-b8-s0": 0.66, "scratch-b8-s1": 0.66}
    for cell in results["cells"]:
        cell["test"] = tests[cell["id"]]
    (folder / "results.json").write_text(json.dumps(results))
    summary = build_report(folder, n_boot=BOOT)
    g = summary["gains"][0]["vs"]["scratch"]
    assert g["method"] == "seeds only" and g["estimate"] == pytest.approx(-0.01)
    assert g["low"] < 0 < g["high"] and g["warning"] == "transfer not better than scratch"
    assert summary["warnings"] == ["8 per class: lp-ft vs scratch: transfer not better than scratch"]
    assert any("no saved test predictions" in n and "scratch-b8-s1" in n for n in summary["notes"])
    assert "no saved test predictions" in (folder / "report.md").read_text()


def test_labels_to_reach(tmp_path: Path) -> None:
    table = {
        "fast": ("transfer", {8: 0.5, 64: 0.8, "all": 0.85}),
        "slow": ("transfer", {8: 0.3, 64: 0.4, "all": 0.5}),
        "scratch": ("scratch", {8: 0.4, 64: 0.55, "all": 0.7}),
    }
    summary = build_report(write_compare(tmp_path, table, n_test=1000), n_boot=BOOT)
    reach = summary["labels_to_reach"]
    assert reach["target"]["budget"] == "all" and reach["target"]["value"] == pytest.approx(0.7, abs=0.03)
    assert reach["strategies"]["fast"]["budget"] == 64
    assert reach["strategies"]["slow"] is None
    assert "fast reaches scratch's best with 64 per class instead of all" in summary["verdict"]
    assert "slow does not reach" in summary["verdict"]


def test_partial_results(tmp_path: Path) -> None:
    """One seed, no predictions, no scratch or classical, a failed and a pending cell."""
    extra = [
        {"id": "lora-b8-s0", "strategy": "lora", "kind": "transfer", "budget": 8, "seed": 0, "status": "failed",
         "error": "CUDA out of memory", "test": None},
        {"id": "lp-ft-b64-s0", "strategy": "lp-ft", "kind": "transfer", "budget": 64, "seed": 0,
         "status": "pending", "test": None},
    ]  # fmt: skip
    table = {"lp-ft": ("transfer", {8: 0.7}), "linear-probe": ("transfer", {8: 0.6})}
    folder = write_compare(tmp_path, table, seeds=(0,), predictions=False, extra_cells=extra)
    summary = build_report(folder, n_boot=BOOT)
    assert summary["counts"] == {"done": 2, "failed": 1, "pending": 1}
    assert summary["gains"][0]["vs"] == {"scratch": None, "classical": None}
    assert "no finished scratch baseline" in summary["verdict"]
    assert "gains" in summary["plots"] and "confusion" in summary["plots"]
    md = (folder / "report.md").read_text()
    assert "CUDA out of memory" in md and "lp-ft-b64-s0" in md
    assert "needs peft" in md and "capped to 480 per class" in md  # refused strategies, capped budgets
    assert all(p["std"] is None for p in summary["curves"]["lp-ft"])


def test_seeds_only_when_predictions_are_missing(tmp_path: Path) -> None:
    folder = write_compare(tmp_path, arms(), n_test=200)
    results = json.loads((folder / "results.json").read_text())
    for cell in results["cells"]:
        if cell["strategy"] == "scratch" and cell["budget"] == 8:
            cell["predictions"] = "cells/gone.json"
    (folder / "results.json").write_text(json.dumps(results))
    summary = build_report(folder, n_boot=BOOT)
    methods = {r["budget"]: r["vs"]["scratch"]["method"] for r in summary["gains"]}
    assert methods == {8: "seeds only", 64: "seeds x test examples", "all": "seeds x test examples"}
    assert any("cells/gone.json" in n for n in summary["notes"])


def test_lower_is_better_flips_the_warning(tmp_path: Path) -> None:
    folder = write_compare(tmp_path, arms(transfer=0.8, scratch=0.4), predictions=False)
    results = json.loads((folder / "results.json").read_text())
    results["plan"].update(metric="perplexity", higher_is_better=False)
    (folder / "results.json").write_text(json.dumps(results))
    summary = build_report(folder, n_boot=BOOT)
    assert summary["warnings"] and all("negative transfer" in w for w in summary["warnings"])
    # lower is better: the best transfer strategy is the one with the lowest validation score
    assert all(r["strategy"] == "linear-probe" for r in summary["gains"])
    assert summary["labels_to_reach"]["strategies"]["linear-probe"] is None
    assert any("perplexity cannot be recomputed" in n for n in summary["notes"])


@pytest.mark.parametrize("content", [None, "{not json", '{"plan": {}}', '{"plan": {}, "cells": [1]}'])
def test_cli_report_on_missing_or_corrupt_results(tmp_path: Path, capsys, content: str | None) -> None:
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(RunError):
        build_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'results.json'}: ") and "\n" not in err


def test_cli_report_prints_where_it_wrote(good, capsys) -> None:
    folder, _ = good
    assert main(["report", str(folder), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert f"report: {folder / 'report.html'}" in out and "lp-ft" in out


def _write_task(folder: Path, metric: str, unit: str, preds: dict, y_true, per_type=None) -> Path:
    """A two-arm grid (lp-ft vs scratch) of another task from explicit predictions {(arm, budget, seed): y_pred}."""
    import numpy as np

    from transferkit.comparison.stats import score_predictions

    cells = []
    for (arm, budget, seed), y_pred in preds.items():
        cell_id = f"{arm}-b{budget}-s{seed}"
        rel = f"cells/{cell_id}/test_predictions.json"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(json.dumps({"y_true": y_true, "y_pred": y_pred}))
        score = score_predictions(metric, y_true, y_pred)
        kind = "transfer" if arm == "lp-ft" else "scratch"
        cells.append(
            {"id": cell_id, "strategy": arm, "kind": kind, "budget": budget, "examples": budget, "seed": seed,
             "status": "done", "validation": score + float(np.random.default_rng(seed).normal(0, 0.001)),
             "test": score, "test_metrics": {metric: score, "per_type": per_type} if per_type else {metric: score},
             "wall_seconds": 10.0, "predictions": rel}
        )  # fmt: skip
    plan = {"task": "x", "metric": metric, "higher_is_better": True, "budget_unit": unit, "seeds": [0, 1],
            "classical": None, "classical_note": "generation has no classical baseline"}  # fmt: skip
    (folder / "results.json").write_text(json.dumps({"version": 1, "plan": plan, "cells": cells}))
    return folder


def test_ner_grid_scores_entities_and_shows_per_type_f1(tmp_path: Path) -> None:
    good, bad = ["B-PER", "I-PER", "O", "B-LOC"], ["O", "O", "O", "B-LOC"]
    y_true = [good] * 60
    preds = {}
    for seed in (0, 1):
        preds[("lp-ft", 50, seed)] = [good if i % 10 else bad for i in range(60)]
        preds[("scratch", 50, seed)] = [good if i % 2 else bad for i in range(60)]
    per_type = {"PER": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 60}}
    folder = _write_task(tmp_path, "f1", "sentences", preds, y_true, per_type)
    summary = build_report(folder, n_boot=BOOT)
    g = summary["gains"][0]["vs"]["scratch"]
    assert g["method"] == "seeds x test examples" and g["n_examples"] == 60
    # entity F1: lp-ft finds 114 of 120 entities (precision 1), scratch 90 of 120
    assert g["estimate"] == pytest.approx(2 * 114 / 234 - 2 * 90 / 210)
    assert "confusion" not in summary["plots"]
    md = (folder / "report.md").read_text()
    assert "| PER | 0.900 | 0.800 | 0.850 | 60 |" in md and "50 sentences" in md
    assert "generation has no classical baseline" in md


def test_generation_grid_with_exact_match_and_no_y_true(tmp_path: Path) -> None:
    preds = {
        (arm, 20, s): [i % k == 0 for i in range(100)]
        for arm, k in (("lp-ft", 1), ("scratch", 2))
        for s in (0, 1)
    }
    summary = build_report(_write_task(tmp_path, "exact_match", "examples", preds, None), n_boot=BOOT)
    g = summary["gains"][0]["vs"]["scratch"]
    assert g["estimate"] == pytest.approx(0.5) and g["low"] < 0.5 < g["high"]
    assert g["method"] == "seeds x test examples"
