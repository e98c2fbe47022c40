"""The guard: a fine-tuned model below the pretrained baseline on validation is reported, and replaced."""

from __future__ import annotations

import pytest
import torch

import transferkit
from transferkit.evaluation.guard import below_baseline, keep_better


def metrics(tuned: float, base: float, metric: str = "f1_macro") -> dict:
    return {
        "validation": {metric: tuned}, "test": {metric: tuned},
        "pretrained_baseline": {"validation": {metric: base}, "test": {metric: base + 0.01}},
    }  # fmt: skip


def test_below_baseline_respects_the_metric_direction() -> None:
    assert below_baseline(metrics(0.7, 0.8), "f1_macro") is not None
    assert below_baseline(metrics(0.8, 0.7), "f1_macro") is None
    assert below_baseline(metrics(0.8, 0.8), "f1_macro") is None  # equal: the probe itself
    assert below_baseline(metrics(12.0, 10.0, "perplexity"), "perplexity") is not None  # lower is better
    assert below_baseline(metrics(9.0, 10.0, "perplexity"), "perplexity") is None
    assert below_baseline({"validation": {"f1_macro": 0.5}}, "f1_macro") is None  # no baseline computed


def test_keep_better_swaps_metrics_and_model() -> None:
    m = metrics(0.7, 0.8)
    kept = keep_better(m, "f1_macro", True, lambda: "baseline-model")
    assert kept == "baseline-model" and m["model"] == "pretrained_baseline"
    assert m["validation"]["f1_macro"] == 0.8 and m["test"]["f1_macro"] == pytest.approx(0.81)
    assert m["fine_tuned"]["validation"]["f1_macro"] == 0.7 and len(m["warnings"]) == 1
    m = metrics(0.7, 0.8)
    assert keep_better(m, "f1_macro", False, lambda: pytest.fail("must not build")) is None
    assert m["model"] == "fine_tuned" and "keep_better=false" in m["warnings"][0]
    m = metrics(0.9, 0.8)
    assert keep_better(m, "f1_macro", True, lambda: pytest.fail("must not build")) is None
    assert "warnings" not in m


@pytest.mark.parametrize("keep", [True, False])
def test_a_ruined_fine_tune_keeps_the_baseline(toy_frames, tmp_path, keep: bool) -> None:
    """A learning rate of 5 wrecks full fine-tuning; the baseline (trunk + probe) becomes the run's model."""
    run = transferkit.fit(
        frames=toy_frames, backbone="tiny-bert", strategy="full", output=str(tmp_path / "run"),
        overrides=["training.learning_rate=5", "training.max_steps=6", "training.progress=false",
                   f"evaluation.keep_better={str(keep).lower()}"],
    )  # fmt: skip
    m = run.metrics
    base = m["pretrained_baseline"]["validation"]["f1_macro"]
    assert m["warnings"] and "below the pretrained baseline" in m["warnings"][0]
    assert "Warning" in (run.run_dir / "README.md").read_text()
    saved = transferkit.load(run.run_dir).model.state_dict()
    pretrained = _pretrained_state()
    trunk = [k for k in pretrained if k.startswith("backbone.")]
    same_trunk = all(torch.equal(saved[k], pretrained[k]) for k in trunk)
    if keep:
        assert m["model"] == "pretrained_baseline" and m["validation"]["f1_macro"] == base
        assert m["fine_tuned"]["validation"]["f1_macro"] < base
        assert same_trunk  # RUN/model is the untouched trunk (+ the probe as head), not the ruined model
    else:
        assert m["model"] == "fine_tuned" and m["validation"]["f1_macro"] < base
        assert not same_trunk


def _pretrained_state() -> dict:
    from transferkit.backbones import resolve_backbone
    from transferkit.config import load_config
    from transferkit.tasks.text_classification.model import build_model

    cfg = load_config(None, ["data.dataset=rotten_tomatoes", "backbone.name=tiny-bert"])
    return build_model(resolve_backbone(cfg.backbone), cfg, ["neg", "pos"]).state_dict()
