"""Token classification end to end on tiny-bert: fit -> run folder -> load -> predict / evaluate, the CLI,
plain transformers agreement, and strategies that freeze the trunk (cached token features) or use adapters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import transferkit
from transferkit.cli.main import main
from transferkit.errors import DataError

PER = ["Angela Merkel", "John Smith", "Marie Curie", "Ada Lovelace"]
LOC = ["Paris", "Berlin", "New York", "Tokyo"]
FILL = ["the", "a", "visited", "met", "in", "on", "with", "yesterday", "today", "and", "saw"]


def make_sentences(n: int, seed: int, long_every: int = 10) -> list[dict]:
    """Sentences whose entities are fixed names; every ``long_every``-th one is longer than 24 sub-tokens."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(2, 5) * (6 if i % long_every == 0 else 1)):
            r = rng.random()
            if r < 0.5:
                kind, name = ("PER", rng.choice(PER)) if r < 0.25 else ("LOC", rng.choice(LOC))
                words = name.split()
                tokens += words
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
            else:
                tokens.append(rng.choice(FILL))
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_conll(path: Path, rows: list[dict]) -> Path:
    path.write_text(
        "".join(
            "".join(f"{t} {g}\n" for t, g in zip(r["tokens"], r["tags"], strict=True)) + "\n" for r in rows
        )
    )
    return path


QUICK = [
    "training.progress=false",
    "training.batch_size=8",
    "training.learning_rate=2e-3",
    "backbone.max_length=24",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ner")
    return {
        "train": write_jsonl(folder / "train.jsonl", make_sentences(60, 0)),
        "validation": write_conll(folder / "validation.conll", make_sentences(12, 1)),
        "test": write_jsonl(folder / "test.jsonl", make_sentences(16, 2)),
    }


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ner_full"
    return transferkit.fit(
        train=str(files["train"]), validation=str(files["validation"]), test=str(files["test"]),
        backbone="tiny-bert", strategy="full", epochs=3, output=str(out),
        overrides=["task.type=token-classification", *QUICK],
    )  # fmt: skip


def test_run_folder_records_task_and_entity_metrics(run) -> None:
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    for split in ("test", "validation"):
        assert {"f1", "precision", "recall", "per_type", "token_report"} <= set(metrics[split])
        assert set(metrics[split]["per_type"]) == {"PER", "LOC"}
    assert metrics["test"]["f1"] > 0.5  # fixed names: learnable in a few steps
    assert metrics["best_validation_metric"]["name"] == "f1"
    assert metrics["training"]["windows_split"] > 0  # long sentences were windowed, not truncated
    info = json.loads((run.run_dir / "labels.json").read_text())
    assert info["task"] == "token-classification" and info["labels"][0] == "O"
    assert (
        "pretrained_baseline" in metrics and "token-classification" in (run.run_dir / "README.md").read_text()
    )


def test_load_reproduces_fit_metrics_exactly(run, files) -> None:
    model = transferkit.load(run.run_dir)
    assert model.task == "token-classification"
    again = model.evaluate(files["test"])
    for key in ("f1", "precision", "recall", "accuracy"):
        assert again[key] == pytest.approx(run.metrics["test"][key], abs=1e-9)
    assert again["per_type"] == run.metrics["test"]["per_type"]


def test_onnx_export_predicts_and_scores_like_pytorch(run, files, tmp_path) -> None:
    from transferkit.cli.main import main
    from transferkit.compression import export_run

    folder = export_run(run.run_dir, tmp_path / "onnx")
    meta = json.loads((folder / "export.json").read_text())
    assert meta["task"] == "token-classification" and meta["max_abs_diff"] < 1e-4
    onnx_model, torch_model = transferkit.load(folder), transferkit.load(run.run_dir)
    assert type(onnx_model).__name__ == "OnnxTokenClassifier" and onnx_model.labels == torch_model.labels
    texts = ["yesterday Angela Merkel visited New York and Paris .", " ".join(["Paris"] * 40), "nothing here"]
    a, b = onnx_model.predict(texts), torch_model.predict(texts)  # the 40-word text spans several windows
    assert [[(e["start"], e["end"], e["type"]) for e in s] for s in a] == [
        [(e["start"], e["end"], e["type"]) for e in s] for s in b
    ]
    assert all(
        abs(x["score"] - y["score"]) < 1e-4
        for sa, sb in zip(a, b, strict=True)
        for x, y in zip(sa, sb, strict=True)
    )
    assert onnx_model.evaluate(files["test"])["f1"] == pytest.approx(run.metrics["test"]["f1"], abs=1e-9)
    assert main(["predict", str(folder), "--text", "Angela Merkel visited Paris ."]) == 0
    from fastapi.testclient import TestClient

    from transferkit.serving import ServeSettings, create_app

    with TestClient(create_app(folder, ServeSettings())) as client:
        served = client.post("/v1/predict", json={"inputs": texts[:1]}).json()["predictions"]
        assert [p["entities"] for p in served] == a[:1]
        assert client.get("/v1/model").json()["task"] == "token-classification"


def test_spans_carry_character_offsets_for_raw_and_pretokenized_input(run) -> None:
    model = transferkit.load(run.run_dir)
    text = "yesterday Angela Merkel visited New York and Paris ."
    raw = model.predict(text)
    assert len(raw) == 1 and raw[0], "no entity found"
    for span in raw[0]:
        assert text[span["start"] : span["end"]] == span["text"]
        assert span["type"] in ("PER", "LOC") and 0 < span["score"] <= 1
    tokens = text.split()
    pre = model.predict([tokens, ["the"]])
    assert [(s["text"], s["type"]) for s in pre[0]] == [(s["text"], s["type"]) for s in raw[0]]
    assert pre[1] == [] and model.predict([""]) == [[]]
    joined = " ".join(tokens)
    assert all(joined[s["start"] : s["end"]] == s["text"] for s in pre[0])


def test_sentence_longer_than_max_length_gets_a_tag_per_word(run) -> None:
    model = transferkit.load(run.run_dir)
    words = ("Paris visited the Angela Merkel with Berlin " * 8).split()  # far over 24 sub-tokens
    tags = model.tag([words])[0]
    assert len(tags) == len(words)
    spans = model.predict([words])[0]
    assert spans[-1]["end"] == len(" ".join(words))  # the last word (Berlin) is still predicted


def test_plain_transformers_pipeline_agrees(run) -> None:
    from transformers import AutoModelForTokenClassification, pipeline

    model = AutoModelForTokenClassification.from_pretrained(run.run_dir / "model")
    assert type(model).__name__ == "BertForTokenClassification"
    assert model.config.id2label[0] == "O"
    ner = pipeline("token-classification", model=str(run.run_dir / "model"), aggregation_strategy="first")
    text = "yesterday Angela Merkel visited New York ."
    theirs = [(e["entity_group"], e["start"], e["end"]) for e in ner(text)]
    ours = [(s["type"], s["start"], s["end"]) for s in transferkit.load(run.run_dir).predict(text)[0]]
    assert theirs == ours and ours


def test_cli_predict_and_evaluate(run, files, tmp_path, capsys) -> None:
    assert main(["predict", str(run.run_dir), "--text", "Angela Merkel visited Paris ."]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["text"] == "Angela Merkel visited Paris ." and isinstance(line["entities"], list)
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(run.run_dir), "--input", str(files["test"]), "--output", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 16 and len(rows[0]["predicted_tags"]) == len(rows[0]["tokens"])
    assert main(["predict", str(run.run_dir), "--input", str(files["test"]), "--output", str(out)]) == 2
    capsys.readouterr()
    assert main(["predict", str(run.run_dir), "--input", str(files["validation"])]) == 0  # CoNLL, printed
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(printed) == 12 and all(len(r["predicted_tags"]) == len(r["tokens"]) for r in printed)
    metrics_file = tmp_path / "m.json"
    assert (
        main(
            ["evaluate", str(run.run_dir), "--data", str(files["validation"]), "--output", str(metrics_file)]
        )
        == 0
    )
    assert json.loads(metrics_file.read_text())["f1"] == pytest.approx(run.metrics["validation"]["f1"])


def test_malformed_tags_fail_with_file_and_line(files, tmp_path) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("Paris B-LOC\nis O\n\nthe O\nBerlin I-LOC\n")
    with pytest.raises(DataError, match=r"bad.conll line 4 word 2: I-LOC does not continue"):
        transferkit.fit(
            train=str(bad),
            backbone="tiny-bert",
            output=str(tmp_path / "r"),
            overrides=["task.type=token-classification"],
        )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("strategy", ["head", "lora", "top-k"])
def test_strategies_train_and_keep_frozen_weights(strategy, files, tmp_path) -> None:
    from transferkit.backbones import resolve_backbone
    from transferkit.config import load_config
    from transferkit.tasks.token_classification.model import build_token_model

    result = transferkit.fit(
        train=str(files["train"]), test=str(files["test"]), validation=str(files["validation"]),
        backbone="tiny-bert", strategy=strategy, epochs=2, output=str(tmp_path / strategy),
        overrides=["task.type=token-classification", "evaluation.pretrained_baseline=false", *QUICK]
        + (["strategy.k=1"] if strategy == "top-k" else []),
    )  # fmt: skip
    m = result.metrics
    assert 0 < m["trainable_parameters"] < m["total_parameters"]
    assert 0 <= m["test"]["f1"] <= 1 and m["training"]["steps"] > 0
    saved = transferkit.load(result.run_dir).model
    cfg = load_config(None, ["data.train=x", "backbone.name=tiny-bert"])
    labels = json.loads((result.run_dir / "labels.json").read_text())["labels"]
    fresh = build_token_model(resolve_backbone(cfg.backbone), cfg, labels)
    embeddings = "embeddings.word_embeddings.weight"
    assert torch.equal(saved.base_model.state_dict()[embeddings], fresh.backbone.state_dict()[embeddings])
    query = "encoder.layer.0.attention.self.query.weight"
    changed = not torch.equal(saved.base_model.state_dict()[query], fresh.backbone.state_dict()[query])
    assert changed == (strategy == "lora")  # head: frozen trunk; top-k (k=1): block 0 is frozen; lora: merged
    top = "encoder.layer.1.output.dense.weight"
    assert torch.equal(saved.base_model.state_dict()[top], fresh.backbone.state_dict()[top]) == (
        strategy == "head"
    )
    if strategy == "lora":
        assert (result.run_dir / "adapter" / "adapter_config.json").is_file()


def test_resume_from_a_mid_run_checkpoint_ends_like_the_uninterrupted_run(files, tmp_path) -> None:
    import shutil

    small = {
        n: write_jsonl(tmp_path / f"{n}.jsonl", make_sentences(k, i, 100))
        for i, (n, k) in enumerate([("train", 24), ("validation", 6), ("test", 6)])
    }
    args = dict(
        train=str(small["train"]), validation=str(small["validation"]), test=str(small["test"]),
        backbone="tiny-bert", strategy="full", epochs=2,
        overrides=["task.type=token-classification", "evaluation.pretrained_baseline=false", *QUICK,
                   "training.checkpoint_every_steps=2", "training.keep_checkpoints=20"],
    )  # fmt: skip
    whole = transferkit.fit(**args, output=str(tmp_path / "a"))
    cut = tmp_path / "b"
    transferkit.fit(**args, output=str(cut))
    steps = sorted((cut / "checkpoints").iterdir())
    assert len(steps) > 2
    for later in steps[2:]:  # as if killed after the second checkpoint
        shutil.rmtree(later)
    for done in ("metrics.json", "labels.json", "model", "README.md"):
        path = cut / done
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    resumed = transferkit.fit(resume=cut)
    assert resumed.metrics["training"]["resumed_from_step"] == int(steps[1].name.split("-")[1])
    assert resumed.metrics["test"]["f1"] == pytest.approx(whole.metrics["test"]["f1"])
    assert resumed.metrics["test"]["loss"] == pytest.approx(whole.metrics["test"]["loss"], rel=1e-5)
    assert resumed.metrics["test"]["per_type"] == whole.metrics["test"]["per_type"]


def test_head_on_cached_token_features_equals_the_uncached_run(tmp_path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", make_sentences(24, 5))
    losses = []
    for cache in ("auto", "off"):
        run = transferkit.fit(
            train=str(train), backbone="tiny-bert", strategy="head", epochs=2, output=str(tmp_path / cache),
            overrides=["task.type=token-classification", "evaluation.pretrained_baseline=false", *QUICK,
                       f"strategy.cache={cache}", "data.validation_size=0.25", "data.test_size=0.25"],
        )  # fmt: skip
        losses.append(run.metrics["test"]["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize(
    "text, words",
    [
        ("The U.S. army met the U.N. in Paris.", ["The", "U.S.", "army", "met", "the", "U.N.", "in", "Paris", "."]),
        ("Jean-Luc don't pay 3.5 euros, e.g. here", ["Jean-Luc", "don't", "pay", "3.5", "euros", ",", "e.g.", "here"]),
    ],
)  # fmt: skip
def test_raw_text_is_split_into_conll_style_words_with_offsets(text, words):
    from transferkit.tasks.token_classification.predictor import split_words

    got, spans = split_words(text)
    assert got == words
    assert [text[a:b] for a, b in spans] == words
