"""The ``transferkit`` command line: exit codes, one-line errors, listings, fit -> predict -> evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from transferkit.cli.main import main
from transferkit.errors import TransferkitError

QUICK = [
    "--backbone",
    "tiny-bert",
    "--epochs",
    "1",
    "training.progress=false",
    "evaluation.pretrained_baseline=false",
]


@pytest.fixture(scope="module", autouse=True)
def console_script(tmp_path_factory: pytest.TempPathFactory):
    """The real entry point in a fresh interpreter, started first so its slow imports overlap the other tests."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "transferkit.cli.main", "fit", "--train", "missing.csv"]
    cwd = tmp_path_factory.mktemp("console")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich folds table cells to the terminal width; a wide one keeps every name on one line.
    monkeypatch.setenv("COLUMNS", "250")


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _fails(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    return _one_line_error(capsys.readouterr().err)


def test_fit_missing_file(tmp_path: Path, capsys) -> None:
    line = _fails(
        ["fit", "--train", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "run"), *QUICK], capsys
    )
    assert "missing.csv" in line
    assert not (tmp_path / "run").exists()


def test_fit_unknown_backbone(toy_csv: Path, tmp_path: Path, capsys) -> None:
    line = _fails(
        ["fit", "--train", str(toy_csv), "--backbone", "no-such-backbone", "--output", str(tmp_path / "run")],
        capsys,
    )
    assert "no-such-backbone" in line
    assert not (tmp_path / "run").exists()


def test_fit_unknown_strategy(toy_csv: Path, capsys) -> None:
    line = _fails(["fit", "--train", str(toy_csv), "--strategy", "heda", *QUICK], capsys)
    assert "strategy.name" in line and "did you mean head" in line


def test_fit_unknown_dataset(tmp_path: Path, capsys) -> None:
    line = _fails(["fit", "--dataset", "no_such_dataset", "--output", str(tmp_path / "run"), *QUICK], capsys)
    assert "no_such_dataset" in line


def test_fit_existing_output(toy_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    line = _fails(["fit", "--train", str(toy_csv), "--output", str(out), *QUICK], capsys)
    assert "already exists" in line
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("override", ["training.epochs=-1", "training.nope=1", "not-an-override"])
def test_fit_bad_override(toy_csv: Path, override: str, capsys) -> None:
    _fails(["fit", "--train", str(toy_csv), *QUICK, override], capsys)


def test_predict_missing_run(tmp_path: Path, capsys) -> None:
    line = _fails(["predict", str(tmp_path / "nope"), "--text", "hello"], capsys)
    assert "nope" in line


def test_debug_reraises(tmp_path: Path) -> None:
    with pytest.raises(TransferkitError, match="missing.csv"):
        main(["--debug", "fit", "--train", str(tmp_path / "missing.csv"), *QUICK])


def test_listings(capsys) -> None:
    from transferkit.backbones import BACKBONES
    from transferkit.data import DATASETS
    from transferkit.strategies import STRATEGIES

    for command, registry in (("datasets", DATASETS), ("strategies", STRATEGIES), ("backbones", BACKBONES)):
        assert main([command]) == 0
        out = capsys.readouterr().out
        for name in registry.names():
            assert name in out, (command, name)


def test_config_explain(capsys) -> None:
    from transferkit.config import explain

    assert main(["config", "explain"]) == 0
    out = capsys.readouterr().out
    for path, _, _ in explain():
        assert path in out, path
    assert "strategy.cache" in out  # the head strategy's own setting


def test_usage_error_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--epochs", "many"])
    assert info.value.code == 2


@pytest.fixture(scope="module")
def cli_run(toy_csv_session: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["fit", "--train", str(toy_csv_session), "--output", str(out), *QUICK])
    return code, out


def test_quick_fit(cli_run) -> None:
    code, run = cli_run
    assert code == 0
    assert (run / "model" / "config.json").is_file()
    assert (run / "metrics.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["backbone"] == "tiny-bert"


def test_predict_texts(cli_run, capsys) -> None:
    _, run = cli_run
    texts = ["a great film", "boring"]
    assert main(["predict", str(run), "--text", texts[0], "--text", texts[1]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["text"] for r in records] == texts
    for r in records:
        assert r["label"] in r["scores"]
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_file(cli_run, tmp_path: Path, capsys) -> None:
    _, run = cli_run
    src, out = tmp_path / "f.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": ["a great film", "boring", "superb"]}).to_csv(src, index=False)
    assert main(["predict", str(run), "--input", str(src), "--output", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 3
    assert {"text", "predicted_label", "score", "p_neg", "p_pos"} <= set(frame.columns)
    capsys.readouterr()
    _fails(["predict", str(run), "--input", str(src), "--output", str(out)], capsys)  # never overwrites


def test_evaluate(cli_run, toy_csv: Path, tmp_path: Path, capsys) -> None:
    _, run = cli_run
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(run), "--data", str(toy_csv), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["num_examples"] == 120


def test_console_script_error_is_one_line(console_script) -> None:
    stdout, stderr = console_script.communicate(timeout=300)
    assert console_script.returncode == 2, stderr
    line = _one_line_error(stderr)
    assert "missing.csv" in line


def test_lora_merge_and_no_merge_predict_alike(toy_csv_session: Path, tmp_path: Path) -> None:
    """--merge writes the adapter into RUN/model (plain transformers sees it); --no-merge keeps the pretrained
    trunk there, and transferkit.load puts the adapter back: both predict the same."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import transferkit

    lora = ["--strategy", "lora", "--seed", "3"]
    runs = {}
    for flag in ("--merge", "--no-merge"):
        runs[flag] = tmp_path / flag.strip("-")
        argv = ["fit", "--train", str(toy_csv_session), "--output", str(runs[flag]), flag, *lora, *QUICK]
        assert main([*argv, "strategy.lr_multiplier=200"]) == 0
    merged_info = json.loads((runs["--merge"] / "adapter" / "transferkit.json").read_text())
    unmerged_info = json.loads((runs["--no-merge"] / "adapter" / "transferkit.json").read_text())
    assert merged_info == {"merged": True} and unmerged_info == {"merged": False}

    texts = ["a great film", "boring and long", "fine"]
    merged = transferkit.load(runs["--merge"]).predict_proba(texts)
    unmerged = transferkit.load(runs["--no-merge"]).predict_proba(texts)
    assert merged == pytest.approx(unmerged, abs=1e-5)

    tok = AutoTokenizer.from_pretrained(runs["--merge"] / "model")
    batch = tok(texts, padding=True, return_tensors="pt")

    def plain(run: Path) -> torch.Tensor:
        model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
        with torch.no_grad():
            return model(**batch).logits.softmax(-1)

    assert plain(runs["--merge"]).numpy() == pytest.approx(merged, abs=1e-5)
    # the unmerged folder holds the pretrained trunk: without the adapter the predictions differ
    assert not torch.allclose(plain(runs["--no-merge"]), torch.as_tensor(merged), atol=1e-4)


def test_merge_flag_needs_an_adapter_strategy(toy_csv: Path, capsys) -> None:
    line = _fails(["fit", "--train", str(toy_csv), "--strategy", "full", "--no-merge", *QUICK], capsys)
    assert "strategy.merge" in line


def test_piped_fit_output_keeps_whole_column_names_and_says_what_a_probe_did(
    toy_csv: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")  # a narrow "terminal": piped output must still not cut columns
    args = ["fit", "--train", str(toy_csv), "--strategy", "linear-probe", "--output", str(tmp_path / "lp")]
    assert main([*args, *QUICK]) == 0
    out = capsys.readouterr().out  # captured: not a terminal
    assert "precision_macro" in out and "recall_macro" in out and "…" not in out
    assert "closed-form fit on cached features (no optimizer steps)" in out
    assert "0 steps" not in out and "0.0 samples/s" not in out
    assert (
        main(
            ["fit", "--train", str(toy_csv), "--output", str(tmp_path / "full"), "--strategy", "full", *QUICK]
        )
        == 0
    )
    summary = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("trainable parameters")
    ]
    assert summary and "optimizer steps" in summary[0] and "samples/s" in summary[0]
