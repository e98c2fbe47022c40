"""Generation end to end on a tiny random Llama: memorise completions then generate them exactly (greedy),
the run folder, LoRA, refused strategies, resume, and the ``generate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import transferkit
from transferkit.cli.main import main
from transferkit.errors import ConfigError

PAIRS = [
    ("capital of France?", "Paris"),
    ("capital of Italy?", "Rome"),
    ("capital of Germany?", "Berlin"),
    ("capital of Spain?", "Madrid"),
    ("is the sky blue?", "yes"),
]
BASE = [
    "task.type=generation",
    "backbone.name=tiny-llama",
    "training.warmup_ratio=0",
    "training.progress=false",
    "output.tensorboard=false",
    "generation.max_new_tokens=8",
]
# 100 full-batch steps at a high constant-ish rate: the tiny model memorises all five (perplexity ~1.1)
MEMORISE = (
    "strategy.name=full",
    "training.epochs=100",
    "training.batch_size=5",
    "training.learning_rate=5e-3",
    "training.weight_decay=0",
)


def _pairs_file(folder: Path) -> Path:
    path = folder / "pairs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": f"Question: {p} Answer:", "completion": f" {c}"}) + "\n" for p, c in PAIRS
        )
    )
    return path


def _fit(data: Path, out: Path, *extra: str):
    files = [f"data.{s}={data}" for s in ("train", "validation", "test")]
    return transferkit.fit(None, overrides=BASE + files + [f"output.dir={out}", *extra])


@pytest.fixture(scope="module")
def memorised(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("gen")
    data = _pairs_file(folder)
    run = _fit(data, folder / "run", *MEMORISE)
    return run, data


def test_memorised_completions_are_generated_exactly(memorised) -> None:
    run, _ = memorised
    model = transferkit.load(run.run_dir)
    prompts = [f"Question: {p} Answer:" for p, _ in PAIRS]
    assert model.predict(prompts) == [{"text": f" {c}"} for _, c in PAIRS]
    assert model.generate(prompts[1]) == " Rome"
    assert "".join(model.stream(prompts[2])) == " Berlin"


def test_stream_runs_at_the_predictor_precision(memorised) -> None:
    run, _ = memorised
    model = transferkit.load(run.run_dir, precision="bf16")
    seen: list[bool] = []
    handle = model.model.model.register_forward_pre_hook(
        lambda m, a: seen.append(torch.is_autocast_enabled("cpu"))
    )
    try:
        "".join(model.stream("Question: capital of Spain? Answer:"))
    finally:
        handle.remove()
    assert seen and all(seen)  # generate runs in a thread: autocast entered there, not inherited


def test_metrics_and_run_folder(memorised) -> None:
    run, _ = memorised
    m = run.metrics
    assert m["test"]["exact_match"] == 1.0 and m["test"]["rouge_l"] == pytest.approx(1.0)
    # fine-tuning took perplexity on the completions from near-uniform (vocab 512) to near 1
    assert m["pretrained_baseline"]["test"]["perplexity"] > 100 > 2 > m["test"]["perplexity"]
    assert m["training"]["train_tokens_per_second"] > 0 and m["test"]["generation_tokens_per_second"] > 0
    # prefill and decode told apart: every prompt token is prefilled once, decode counts tokens after the first
    test = m["test"]
    assert test["prefill_tokens"] > 0 and test["prefill_tokens_per_second"] > 0
    assert 0 <= test["decode_tokens"] < test["prefill_tokens"] + test["generated_examples"] * 100
    assert test["decode_tokens"] == 0 or test["decode_tokens_per_second"] > 0
    assert json.loads((run.run_dir / "metrics.json").read_text())["test"]["exact_match"] == 1.0
    info = json.loads((run.run_dir / "labels.json").read_text())
    assert info["task"] == "generation" and info["labels"] == []
    assert "perplexity" in (run.run_dir / "README.md").read_text()
    plain = AutoModelForCausalLM.from_pretrained(run.run_dir / "model")  # no transferkit, no remote code
    assert plain.config.model_type == "llama"


def test_predictor_evaluate_and_predict_file(memorised, tmp_path: Path) -> None:
    run, data = memorised
    model = transferkit.load(run.run_dir)
    scores = model.evaluate(data)
    assert scores["exact_match"] == 1.0 and scores["num_examples"] == len(PAIRS)
    assert scores["perplexity"] == pytest.approx(run.metrics["test"]["perplexity"], rel=1e-4)
    out = model.predict_file(data, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["generated"] for r in rows] == [f" {c}" for _, c in PAIRS]
    with pytest.raises(transferkit.errors.DataError, match="already exists"):
        model.predict_file(data, out)


def test_generate_command(memorised, capsys) -> None:
    run, _ = memorised
    assert main(["generate", str(run.run_dir), "--prompt", "Question: capital of Spain? Answer:"]) == 0
    assert capsys.readouterr().out.strip() == "Madrid"
    assert (
        main(["generate", str(run.run_dir), "--prompt", "Question: is the sky blue? Answer:", "--stream"])
        == 0
    )
    assert capsys.readouterr().out.strip() == "yes"
    code = main(
        ["generate", str(run.run_dir), "--prompt", "Question:", "--temperature", "1.5", "--top-p", "0.9"]
    )
    assert code == 0
    assert main(["generate", str(run.run_dir), "--prompt", "x", "--temperature", "-1"]) == 2


def test_lora_trains_adapters_only_and_exports_a_merged_model(tmp_path: Path) -> None:
    data = _pairs_file(tmp_path)
    run = _fit(data, tmp_path / "run", "strategy.name=lora", "training.max_steps=3", "training.batch_size=5")
    m = run.metrics
    # 2 blocks x 7 projections, each r * (in + out); the tied head / embeddings stay frozen
    assert m["trainable_parameters"] < 0.5 * m["total_parameters"]
    assert (run.run_dir / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(run.run_dir / "model")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    # the merged model reproduces the validation perplexity measured with the adapters in place
    assert transferkit.load(run.run_dir).evaluate(data)["perplexity"] == pytest.approx(
        m["validation"]["perplexity"], rel=1e-4
    )


def test_full_packed_run_and_head_policy(tmp_path: Path) -> None:
    data = _pairs_file(tmp_path)
    run = _fit(
        data,
        tmp_path / "run",
        "strategy.name=full",
        "generation.packing=true",
        "training.max_steps=2",
        "training.batch_size=1",
    )
    assert run.metrics["training"]["packed_rows"] == 1  # five short examples in one row of 256 tokens
    assert run.metrics["trainable_parameters"] == run.metrics["total_parameters"]


@pytest.mark.parametrize("strategy", ["head", "linear-probe", "gradual"])
def test_classifier_strategies_are_refused(tmp_path: Path, strategy: str) -> None:
    data = _pairs_file(tmp_path)
    with pytest.raises(ConfigError, match="does not apply to generation"):
        _fit(data, tmp_path / "run", f"strategy.name={strategy}", "training.max_steps=1")


def test_resume_ends_as_an_uninterrupted_run(tmp_path: Path, interrupted_copy) -> None:
    data = _pairs_file(tmp_path)
    args = (
        "training.max_steps=6",
        "training.batch_size=2",
        "training.checkpoint_every_steps=2",
        "training.keep_checkpoints=5",
    )
    full = _fit(data, tmp_path / "a", *args)
    # an interruption right after the step-2 checkpoint: later checkpoints and outputs never written
    cut = interrupted_copy(full.run_dir, tmp_path / "b", step=2)
    resumed = transferkit.fit(resume=cut)
    assert resumed.metrics["training"]["resumed_from_step"] == 2
    assert resumed.metrics["test"]["perplexity"] == pytest.approx(
        full.metrics["test"]["perplexity"], rel=1e-5
    )
    a = AutoModelForCausalLM.from_pretrained(full.run_dir / "model").state_dict()
    b = AutoModelForCausalLM.from_pretrained(cut / "model").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
