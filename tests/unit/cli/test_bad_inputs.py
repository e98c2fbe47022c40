"""Bad input to the CLI ends in one line, never a traceback, and leaves the user's files as they were.

One table of mistakes across fit, evaluate, predict, export, compress and serve (files, columns, encodings,
configs, overrides, run folders, the machine's state). Each runs in-process through
``transferkit.cli.main.main`` and must exit 2 with exactly one ``error:`` line on stderr and no traceback,
with every file of the case (and the run folder it reads) byte-identical afterwards. A few run as a real
subprocess to show no traceback reaches the real stderr; ``--debug`` keeps the traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from transferkit.cli.main import main

GOOD = "text,label\nit was great,pos\nawful and boring,neg\nsuperb film,pos\n"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def tree_hashes(*folders: Path) -> dict[str, str]:
    """``{path: sha256}`` of every file under ``folders`` (what a failed command must leave unchanged)."""
    out = {}
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _bomb_png(path: Path) -> Path:
    """A ~20 KB PNG that declares 13,400 x 13,400 pixels: over twice ``PIL.Image.MAX_IMAGE_PIXELS``."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (13_400, 13_400)).save(path, optimize=False)
    return path


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory) -> SimpleNamespace:
    """The tiny run and damaged copies of it (each copied, never the session's own folder)."""
    root = tmp_path_factory.mktemp("bad-runs")
    src = Path(tiny_run.run_dir)

    def copy(name: str, damage) -> Path:
        target = root / name
        shutil.copytree(src, target)
        damage(target)
        return target

    return SimpleNamespace(
        good=copy("good", lambda p: None),
        bad_metrics=copy("bad_metrics", lambda p: _write(p / "metrics.json", '{"test": {"accuracy": 0.5,')),
        bad_manifest=copy("bad_manifest", lambda p: _write(p / "labels.json", "{not json")),
        binary_manifest=copy("binary_manifest", lambda p: _write(p / "labels.json", b"\xff\xfe\x00garbage")),
        wrong_manifest=copy("wrong_manifest", lambda p: _write(p / "labels.json", '{"labels": "pos"}')),
        no_model=copy("no_model", lambda p: shutil.rmtree(p / "model")),
    )


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """An image folder (two classes) whose one image is a decompression bomb."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bomb") / "images"
    for label in ("cat", "dog"):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / label / f"{i}.png")
    _bomb_png(root / "cat" / "bomb.png")
    return root


def _files(t: Path) -> SimpleNamespace:
    """The user's files of one case, all under ``t``."""
    toy = "text,label\n" + "".join(
        f"{w} film number {i},{lab}\n" for i in range(12) for w, lab in (("great", "pos"), ("awful", "neg"))
    )
    return SimpleNamespace(
        good=_write(t / "good.csv", GOOD),
        toy=_write(t / "toy.csv", toy),
        dup=_write(t / "dup.csv", "text,label,text\na,pos,b\nc,neg,d\n"),
        latin1=_write(t / "latin1.csv", "text,label\ncaf\xe9 cr\xe8me,pos\n".encode("latin-1")),
        empty=_write(t / "empty.csv", ""),
        ragged=_write(t / "ragged.csv", "text,label\na,b,c,d\n"),
        score=_write(t / "score.csv", "text,score\ngreat,1\n"),
        p_pos=_write(t / "p_pos.csv", "text,p_pos\ngreat,1\n"),
        label_col=_write(t / "label_col.csv", "text,predicted_label\ngreat,x\n"),
        bad_jsonl=_write(t / "bad.jsonl", '{"text": "a"}\n{"text": \n'),
        dup_jsonl=_write(t / "dup.jsonl", '{"text": "a", "text": "b"}\n'),
        gz=_write(t / "garbage.csv.gz", b"this is not gzip"),
        xlsx=_write(t / "table.xlsx", b"PK\x03\x04"),
        unseen=_write(t / "unseen.csv", "text,label\ngreat,maybe\n"),
        existing=_write(t / "existing.csv", "mine,keep\n1,2\n"),
        existing_json=_write(t / "existing.json", '{"mine": 1}\n'),
        a_file=_write(t / "a_file", "not a folder\n"),
        folder_csv=(t / "folder.csv").mkdir() or t / "folder.csv",
        yaml_bad=_write(t / "bad.yaml", "training:\n  epochs: [1, 2\n"),
        yaml_list=_write(t / "list.yaml", "- a\n- b\n"),
        yaml_latin1=_write(t / "latin1.yaml", "data:\n  train: caf\xe9.csv\n".encode("latin-1")),
        yaml_unknown=_write(t / "unknown.yaml", "training:\n  nope: 1\n"),
        empty_keys=_write(t / "keys.txt", "# no keys\n"),
        missing=t / "missing.csv",
        run_out=(t / "run_out").mkdir() or t / "run_out",
    )


# id -> argv(f: the case's files, r: the runs, b: the bomb folder)
CASES = {
    # predict: files, columns, encodings
    "predict-missing-input": lambda f, r, b: ["predict", r.good, "--input", f.missing],
    "predict-unknown-format": lambda f, r, b: ["predict", r.good, "--input", f.xlsx],
    "predict-empty-file": lambda f, r, b: ["predict", r.good, "--input", f.empty],
    "predict-no-such-column": lambda f, r, b: ["predict", r.good, "--input", f.good, "--text-column", "nope"],
    "predict-latin1": lambda f, r, b: ["predict", r.good, "--input", f.latin1],
    "predict-duplicate-columns": lambda f, r, b: ["predict", r.good, "--input", f.dup],
    "predict-ragged-csv": lambda f, r, b: ["predict", r.good, "--input", f.ragged],
    "predict-bad-jsonl": lambda f, r, b: ["predict", r.good, "--input", f.bad_jsonl],
    "predict-duplicate-json-keys": lambda f, r, b: ["predict", r.good, "--input", f.dup_jsonl],
    "predict-corrupt-gzip": lambda f, r, b: ["predict", r.good, "--input", f.gz],
    "predict-input-is-folder": lambda f, r, b: ["predict", r.good, "--input", f.folder_csv],
    "predict-column-score-taken": lambda f, r, b: ["predict", r.good, "--input", f.score, "--output", f.run_out / "o.csv"],
    "predict-column-p_pos-taken": lambda f, r, b: ["predict", r.good, "--input", f.p_pos],
    "predict-column-predicted_label-taken": lambda f, r, b: ["predict", r.good, "--input", f.label_col],
    "predict-output-exists": lambda f, r, b: ["predict", r.good, "--input", f.good, "--output", f.existing],
    "predict-output-under-a-file": lambda f, r, b: ["predict", r.good, "--input", f.good, "--output", f.a_file / "o.csv"],
    "predict-image-on-text-run": lambda f, r, b: ["predict", r.good, "--image", f.good],
    # predict: run folders
    "predict-no-run": lambda f, r, b: ["predict", f.missing, "--text", "hi"],
    "predict-run-is-a-file": lambda f, r, b: ["predict", f.good, "--text", "hi"],
    "predict-corrupt-metrics": lambda f, r, b: ["predict", r.bad_metrics, "--text", "hi"],
    "predict-corrupt-manifest": lambda f, r, b: ["predict", r.bad_manifest, "--text", "hi"],
    "predict-binary-manifest": lambda f, r, b: ["predict", r.binary_manifest, "--text", "hi"],
    "predict-invalid-manifest": lambda f, r, b: ["predict", r.wrong_manifest, "--text", "hi"],
    "predict-no-model": lambda f, r, b: ["predict", r.no_model, "--text", "hi"],
    # evaluate
    "evaluate-missing-data": lambda f, r, b: ["evaluate", r.good, "--data", f.missing],
    "evaluate-no-label-column": lambda f, r, b: ["evaluate", r.good, "--data", f.good, "--label-column", "nope"],
    "evaluate-unseen-labels": lambda f, r, b: ["evaluate", r.good, "--data", f.unseen],
    "evaluate-latin1": lambda f, r, b: ["evaluate", r.good, "--data", f.latin1],
    "evaluate-duplicate-columns": lambda f, r, b: ["evaluate", r.good, "--data", f.dup],
    "evaluate-output-exists": lambda f, r, b: ["evaluate", r.good, "--data", f.good, "--output", f.existing_json],
    "evaluate-output-under-a-file": lambda f, r, b: ["evaluate", r.good, "--data", f.good, "--output", f.a_file / "m.json"],
    "evaluate-corrupt-metrics": lambda f, r, b: ["evaluate", r.bad_metrics, "--data", f.good],
    # fit: overrides, configs, files
    "fit-override-bad-yaml": lambda f, r, b: ["fit", "--train", f.good, "training.epochs=["],
    "fit-override-not-key-value": lambda f, r, b: ["fit", "--train", f.good, "training.epochs"],
    "fit-override-empty-key": lambda f, r, b: ["fit", "--train", f.good, "training..epochs=1"],
    "fit-override-unknown-field": lambda f, r, b: ["fit", "--train", f.good, "training.nope=1"],
    "fit-override-bad-value": lambda f, r, b: ["fit", "--train", f.good, "training.epochs=many"],
    "fit-config-missing": lambda f, r, b: ["fit", "--config", f.missing],
    "fit-config-bad-yaml": lambda f, r, b: ["fit", "--config", f.yaml_bad],
    "fit-config-not-a-mapping": lambda f, r, b: ["fit", "--config", f.yaml_list],
    "fit-config-latin1": lambda f, r, b: ["fit", "--config", f.yaml_latin1],
    "fit-config-unknown-field": lambda f, r, b: ["fit", "--config", f.yaml_unknown, "--train", f.good],
    "fit-train-missing": lambda f, r, b: ["fit", "--train", f.missing, "--backbone", "tiny-bert"],
    "fit-train-duplicate-columns": lambda f, r, b: ["fit", "--train", f.dup, "--backbone", "tiny-bert"],
    "fit-train-latin1": lambda f, r, b: ["fit", "--train", f.latin1, "--backbone", "tiny-bert"],
    "fit-output-exists": lambda f, r, b: ["fit", "--train", f.toy, "--backbone", "tiny-bert", "--output", f.run_out],
    "fit-resume-missing": lambda f, r, b: ["fit", "--resume", f.missing],
    "fit-image-decompression-bomb": lambda f, r, b: ["fit", "--task", "image-classification", "--train", b, "--backbone", "tiny-vit", "--output", f.run_out / "new"],
    # export, compress
    "export-no-run": lambda f, r, b: ["export", f.missing],
    "export-corrupt-manifest": lambda f, r, b: ["export", r.bad_manifest, "--output", f.run_out / "x"],
    "export-output-exists": lambda f, r, b: ["export", r.good, "--output", f.run_out],
    "compress-no-run": lambda f, r, b: ["compress", f.missing, "--int8"],
    "compress-corrupt-metrics": lambda f, r, b: ["compress", r.bad_metrics, "--int8", "--output", f.run_out / "c"],
    "compress-missing-data": lambda f, r, b: ["compress", r.good, "--int8", "--data", f.missing, "--output", f.run_out / "c"],
    # serve: argument-level failures only (no server starts: uvicorn is stubbed below)
    "serve-access-log-folder-missing": lambda f, r, b: ["serve", r.good, "--access-log", f.run_out / "no" / "access.jsonl"],
    "serve-access-log-is-folder": lambda f, r, b: ["serve", r.good, "--access-log", f.run_out],
    "serve-api-key-file-missing": lambda f, r, b: ["serve", r.good, "--api-key-file", f.missing],
    "serve-api-key-file-empty": lambda f, r, b: ["serve", r.good, "--api-key-file", f.empty_keys],
    "serve-no-run": lambda f, r, b: ["serve", f.missing],
    "serve-corrupt-manifest": lambda f, r, b: ["serve", r.bad_manifest],
}  # fmt: skip


def _no_server(monkeypatch) -> None:
    """A case that got as far as starting uvicorn is a failure of the test, not a hang."""
    import uvicorn

    def refuse(*_a, **_k):
        raise AssertionError("a server was started")

    monkeypatch.setattr(uvicorn.Server, "run", refuse)
    monkeypatch.setattr(uvicorn, "run", refuse)


def _check_one_line(code: int, err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(case, runs, bomb, tmp_path, capsys, monkeypatch) -> None:
    files = _files(tmp_path)
    argv = [str(a) for a in CASES[case](files, runs, bomb)]
    _no_server(monkeypatch)
    monkeypatch.chdir(tmp_path)  # a default output folder (runs/...) lands here, not in the checkout
    before = tree_hashes(tmp_path, runs.good, bomb)
    code = main(argv)
    line = _check_one_line(code, capsys.readouterr().err)
    print(f"{case}: {line}")  # shown with -s / -rP: the messages a user would read
    assert tree_hashes(tmp_path, runs.good, bomb) == before, f"{case} changed a user's file ({line})"
    leftovers = [p.name for p in tmp_path.rglob(".*.tmp*")]
    assert not leftovers, leftovers


def test_table_covers_every_command() -> None:
    commands = {case.split("-", 1)[0] for case in CASES}
    assert commands == {"fit", "evaluate", "predict", "export", "compress", "serve"}
    assert len(CASES) >= 40


def test_column_clash_names_the_column(runs, tmp_path, capsys) -> None:
    files = _files(tmp_path)
    assert main(["predict", str(runs.good), "--input", str(files.score)]) == 2
    assert "'score'" in capsys.readouterr().err


def test_output_that_appears_during_the_run_is_not_overwritten(runs, tmp_path, capsys, monkeypatch) -> None:
    """The --output check before predicting is not the only one: the write itself refuses an existing file."""
    from transferkit.tasks.text_classification.predictor import Predictor

    files = _files(tmp_path)
    output = tmp_path / "late.csv"
    real = Predictor.predict

    def predict_then_race(self, texts):
        output.write_text("written by someone else meanwhile\n")
        return real(self, texts)

    monkeypatch.setattr(Predictor, "predict", predict_then_race)
    code = main(["predict", str(runs.good), "--input", str(files.good), "--output", str(output)])
    assert "already exists" in _check_one_line(code, capsys.readouterr().err)
    assert output.read_text() == "written by someone else meanwhile\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".late.csv.")]


def test_debug_keeps_the_traceback(runs, tmp_path) -> None:
    from transferkit.errors import ConfigError

    files = _files(tmp_path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        main(["--debug", "fit", "training.epochs=["])
    with pytest.raises(NotADirectoryError):
        main(
            [
                "--debug",
                "predict",
                str(runs.good),
                "--input",
                str(files.good),
                "--output",
                str(files.a_file / "o.csv"),
            ]
        )


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "transferkit.cli.main", "-q", *argv],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
    )  # fmt: skip


def test_subprocess_stderr_has_no_traceback(runs, tmp_path) -> None:
    files = _files(tmp_path)
    before = tree_hashes(tmp_path)
    for argv in (
        ["fit", "--train", str(files.good), "training.epochs=["],
        ["predict", str(runs.bad_metrics), "--text", "hi"],
        ["predict", str(runs.good), "--input", str(files.good), "--output", str(files.a_file / "o.csv")],
    ):
        done = _cli(*argv, cwd=tmp_path)
        _check_one_line(done.returncode, done.stderr)
    assert tree_hashes(tmp_path) == before


def test_subprocess_debug_shows_the_traceback(tmp_path) -> None:
    done = _cli("--debug", "fit", "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" in done.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only); unmounted afterwards."""
    if not IS_ROOT or not shutil.which("mount"):
        pytest.skip("a full disk needs a small tmpfs, and mounting one needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    if subprocess.run(["umount", str(mnt)], check=False, capture_output=True).returncode != 0:
        # busy (a failed command left a file open): detach it lazily so the folder can still be removed
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def test_full_disk_is_one_line_and_keeps_earlier_files(runs, tmp_path, small_disk, capsys) -> None:
    files = _files(tmp_path)
    earlier = _write(small_disk / "earlier.csv", GOOD)
    big = tmp_path / "big.csv"
    big.write_text("text\n" + "a fairly long review text that goes on and on\n" * 60_000)  # ~2.8 MB of output
    before = tree_hashes(small_disk)
    code = main(["predict", str(runs.good), "--input", str(big), "--output", str(small_disk / "out.csv")])
    line = _check_one_line(code, capsys.readouterr().err)
    assert "out.csv" in line and "space" in line, line
    assert tree_hashes(small_disk) == before  # the earlier file intact, no partial out.csv or temp file
    assert earlier.read_text() == GOOD and files.good.read_text() == GOOD


def test_full_disk_during_fit_is_one_line_and_keeps_earlier_files(tmp_path, small_disk, capsys) -> None:
    """A run folder that cannot be written (2 MB for a run of ~60 MB with its checkpoints) ends in one line;
    an earlier run folder on the same disk is left as it was."""
    earlier = _write(small_disk / "earlier" / "keep.txt", "an earlier result\n")
    data = _write(tmp_path / "train.csv", "text,label\n" + "".join(
        f"it was great {i},pos\nawful and boring {i},neg\n" for i in range(30)
    ))  # fmt: skip
    before = tree_hashes(small_disk)
    code = main(
        ["fit", "--train", str(data), "--backbone", "tiny-bert", "--strategy", "full", "--epochs", "1",
         "--output", str(small_disk / "run"), "training.progress=false"]
    )  # fmt: skip
    line = _check_one_line(code, capsys.readouterr().err)
    assert "space" in line, line
    assert earlier.read_text() == "an earlier result\n"
    after = tree_hashes(small_disk)
    assert {k: v for k, v in after.items() if k in before} == before  # every earlier file intact


def test_full_disk_during_export_is_one_line_and_keeps_earlier_files(runs, small_disk, capsys) -> None:
    earlier = _write(small_disk / "earlier.txt", "keep me\n")
    filler = small_disk / "filler.bin"
    filler.write_bytes(b"\0" * (1_800_000))  # leaves ~200 kB: less than the ONNX graph
    before = tree_hashes(small_disk)
    code = main(["export", str(runs.good), "--format", "onnx", "--output", str(small_disk / "onnx")])
    line = _check_one_line(code, capsys.readouterr().err)
    assert "space" in line, line
    assert tree_hashes(small_disk) == before  # no half-written export folder left, earlier files intact
    assert earlier.read_text() == "keep me\n"
