"""Small data first, on real shipped data and the shipped backbones: with nothing but the documented defaults,
``auto`` and each default strategy end at or above their own pretrained baseline on validation, and the
strategies that start from the probe never need the guard to get there.

Budgets: 16 and 128 labelled examples per class (rotten_tomatoes, vader_tweets: seeded per-class samples of
the catalog's train split; digits: a stratified sample of that many per class), 500 CoNLL-2003 sentences,
and a LoRA run of SmolLM2 on a few dozen prompt/completion pairs that must learn its completions.
Validation and test are seeded samples of the catalog's own splits (128 / 300 rows) to keep CI time bounded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

import transferkit

pytestmark = pytest.mark.slow

COMMON = ["training.progress=false", "output.tensorboard=false"]
# strategies that start from the fitted probe and evaluate that start first: never below it by construction
FROM_PROBE = {"lp-ft", "head", "gradual", "linear-probe"}


def _sample(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    return frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)


def text_frames(dataset: str, per_class: int) -> dict[str, pd.DataFrame]:
    from transferkit.data import load_catalog_dataset

    cat = load_catalog_dataset(dataset)
    train = pd.concat([_sample(g, per_class) for _, g in cat["train"].groupby("label")])
    return {
        "train": train.sample(frac=1.0, random_state=0).reset_index(drop=True),
        "validation": _sample(cat["validation"], 128),
        "test": _sample(cat["test"], 300),
    }


def check_not_below_baseline(m: dict, metric: str) -> None:
    base = m["pretrained_baseline"]["validation"][metric]
    assert m["validation"][metric] >= base - 1e-9, (m["strategy"], m["validation"][metric], base)
    if m["strategy"] in FROM_PROBE:  # the fine-tuned model itself, before any guard
        assert m["model"] == "fine_tuned" and not m.get("warnings"), m.get("warnings")
    if m["model"] == "pretrained_baseline":  # the guard acted: said so, and kept the discarded scores
        # below it, or ahead by no more than training.min_delta (not shown to be better)
        assert m["warnings"] and m["fine_tuned"]["validation"][metric] <= base + m["training"]["min_delta"]


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("small_text")
    done: dict = {}

    def get(dataset: str, per_class: int, strategy: str | None) -> dict:
        key = (dataset, per_class, strategy)
        if key not in done:
            run = transferkit.fit(
                frames=text_frames(dataset, per_class),
                strategy=strategy,
                output=str(root / f"{dataset}-{per_class}-{strategy or 'default'}"),
                overrides=[*COMMON, "backbone.max_length=128"],
            )
            done[key] = run.metrics
        return done[key]

    return get


@pytest.mark.parametrize("dataset", ["rotten_tomatoes", "vader_tweets"])
@pytest.mark.parametrize("strategy", [None, "linear-probe", "head", "full", "lora"])
def test_text_16_per_class(text_runs, dataset: str, strategy: str | None) -> None:
    m = text_runs(dataset, 16, strategy)
    if strategy is None:  # fit without --strategy: auto, and it says why
        assert m["auto"]["choice"] == m["strategy"] == "lp-ft"  # 16 per class: not below the few-shot row
        assert "16 per class" in m["auto"]["reason"]
    check_not_below_baseline(m, "f1_macro")
    sched = m["training"].get("schedule") or {}
    if strategy not in (None, "linear-probe"):
        assert sched["batch_size"] == 8 and sched["rule"].startswith("auto:")  # 32 examples: 4 steps/epoch


@pytest.mark.parametrize("dataset", ["rotten_tomatoes", "vader_tweets"])
@pytest.mark.parametrize("strategy", [None, "head"])
def test_text_128_per_class(text_runs, dataset: str, strategy: str | None) -> None:
    m = text_runs(dataset, 128, strategy)
    check_not_below_baseline(m, "f1_macro")
    if strategy is None:
        assert m["strategy"] == "lp-ft"
        # 256 examples: 8 steps per epoch, so the data-derived rule trains 160+ steps, not 3 epochs' 24
        assert m["training"]["schedule"]["total_steps"] >= 160


def test_few_shot_starts_from_the_probe_and_keeps_it_or_better(text_runs) -> None:
    m = text_runs("vader_tweets", 8, None)
    assert m["strategy"] == "lp-ft" and m["model"] == "fine_tuned"
    assert m["validation"]["f1_macro"] >= m["pretrained_baseline"]["validation"]["f1_macro"]


@pytest.mark.parametrize("per_class", [16, 128])
@pytest.mark.parametrize("strategy", [None, "head", "lp-ft", "lora"])
def test_digits_images(tmp_path: Path, per_class: int, strategy: str | None) -> None:
    run = transferkit.fit(
        dataset="digits", task="image-classification", backbone="efficientnet-lite0", strategy=strategy,
        output=str(tmp_path / "run"),
        overrides=[*COMMON, f"data.max_train_samples={per_class * 10}", "image.image_size=32"],
    )  # fmt: skip
    m = run.metrics
    check_not_below_baseline(m, "f1_macro")
    if strategy != "head":  # the head trains on cached features: no BatchNorm layer in what trains
        assert m["training"]["batch_norm"] == "frozen"  # a pretrained trunk keeps its BatchNorm statistics
    if strategy is None:
        assert m["auto"]["facts"]["per_class"] >= 0.9 * per_class  # stratified: about per_class in each class
        assert m["auto"]["choice"] == m["strategy"] == "full"  # images from 16 per class up


def test_conll_500_sentences(tmp_path: Path) -> None:
    from transferkit.data import load_catalog_dataset

    cat = load_catalog_dataset("conll2003")
    frames = {"train": _sample(cat["train"], 500), "validation": _sample(cat["validation"], 100),
              "test": _sample(cat["test"], 200)}  # fmt: skip
    run = transferkit.fit(
        frames=frames, task="token-classification", output=str(tmp_path / "run"),
        overrides=[*COMMON, "backbone.max_length=128"],
    )  # fmt: skip
    m = run.metrics
    assert m["strategy"] == m["auto"]["choice"]
    check_not_below_baseline(m, "f1")
    assert m["training"]["steps"] > 3 * math.ceil(500 / 32)  # more than the old 3 epochs


def test_lora_generation_learns_few_dozen_pairs(tmp_path: Path) -> None:
    """A made-up fact, asked 36 ways: the pretrained LM cannot know it; LoRA with the defaults must learn it."""
    forms = [
        "Who founded {c}?",
        "Name the founder of {c}.",
        "{c} was founded by whom?",
        "Tell me who founded {c}.",
    ]
    cities = [
        "Zorbia",
        "Quellmar",
        "Vantrix",
        "Ostrevia",
        "Pellucid Bay",
        "Kirrin",
        "Marrowdale",
        "Tessaly",
        "Ubrin",
    ]
    rows = [{"prompt": f.format(c=c), "completion": " Ada Quill"} for c in cities for f in forms]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = transferkit.fit(
        train=str(data), task="generation", backbone="smollm2-135m", output=str(tmp_path / "run"),
        overrides=[*COMMON, "backbone.max_length=64", "generation.max_new_tokens=6", "data.validation_size=0.15",
                   "data.test_size=0.15"],
    )  # fmt: skip
    m = run.metrics
    assert m["strategy"] == "lora" and m["auto"]["choice"] == "lora"
    assert m["model"] == "fine_tuned"
    assert m["test"]["perplexity"] < m["pretrained_baseline"]["test"]["perplexity"] / 2
    assert m["test"]["exact_match"] >= 0.8, m["test"]
