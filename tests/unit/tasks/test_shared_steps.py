"""Steps every task shares, checked on every task: the bugs where the task fits had drifted apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import transferkit
from transferkit.strategies.base import StrategyPlan

COMMON = ["training.progress=false", "output.tensorboard=false", "training.max_steps=2",
          "evaluation.pretrained_baseline=false"]  # fmt: skip


def _text(tmp: Path) -> dict:
    rows = [(f"a {w} film indeed", lab) for w, lab in (("great", "pos"), ("awful", "neg")) for _ in range(30)]
    return {"frames": {"train": pd.DataFrame(rows, columns=["text", "label"])}, "backbone": "tiny-bert"}


def _tokens(tmp: Path) -> dict:
    rows = [
        {"tokens": ["Ann", "met", "Bob", "in", "Rome"], "tags": ["B-PER", "O", "B-PER", "O", "B-LOC"]}
    ] * 30
    return {"frames": {"train": pd.DataFrame(rows)}, "backbone": "tiny-bert", "task": "token-classification"}


def _images(tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8), np.array(["a", "b"] * 20)
    np.savez(tmp / "img.npz", x=x, y=y)
    return {"train": str(tmp / "img.npz"), "backbone": "tiny-efficientnet", "task": "image-classification"}


def _generation(tmp: Path) -> dict:
    rows = [{"prompt": f"Q{i}?", "completion": " yes"} for i in range(30)]
    return {"frames": {"train": pd.DataFrame(rows)}, "backbone": "tiny-llama", "task": "generation",
            "overrides_extra": ["generation.eval_samples=2", "generation.max_new_tokens=2"]}  # fmt: skip


TASKS = {"text": _text, "tokens": _tokens, "images": _images, "generation": _generation}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_merges_the_adapter_in_place_before_the_final_evaluation(
    task, tmp_path, monkeypatch
) -> None:
    """LoRA: the adapter is merged once, in place (no copy of the model), before the final scores."""
    calls: list[dict] = []
    original = StrategyPlan.merge_adapter

    def spy(self, model, run_dir, save_model, main):
        real = self.unload_adapter

        def export(m, in_place=False):
            calls.append({"in_place": in_place, "metrics_written": (run_dir / "metrics.json").exists()})
            return real(m, in_place=in_place)

        self.unload_adapter = export
        return original(self, model, run_dir, save_model, main)

    monkeypatch.setattr(StrategyPlan, "merge_adapter", spy)
    kw = TASKS[task](tmp_path)
    extra = kw.pop("overrides_extra", [])
    run = transferkit.fit(strategy="lora", output=str(tmp_path / "run"), overrides=[*COMMON, *extra], **kw)
    assert calls == [{"in_place": True, "metrics_written": False}]  # once, in place, before the final scores
    assert (run.run_dir / "adapter" / "adapter_config.json").is_file()  # the adapter, saved before merging
    assert json.loads((run.run_dir / "adapter" / "transferkit.json").read_text())["merged"] is True


def test_image_hidden_caching_is_decided_by_the_backbone_contract(tmp_path, monkeypatch) -> None:
    import transferkit.tasks.image_classification.fit as image_task

    asked: list[str] = []

    def contract(backbone):
        asked.append(type(backbone).__name__)
        return False

    import transferkit.strategies.base as strategies_base  # plan_for asks the contract, for every task

    monkeypatch.setattr(strategies_base, "supports_hidden_cache", contract)
    monkeypatch.setattr(
        image_task, "hidden_states", lambda *a, **k: pytest.fail("cached despite the contract")
    )
    kw = _images(tmp_path)
    transferkit.fit(strategy="top-k", output=str(tmp_path / "run"), overrides=COMMON, **kw)
    assert asked, "the image task did not consult the backbone contract"
