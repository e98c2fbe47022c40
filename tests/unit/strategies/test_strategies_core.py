"""The ``full`` and ``head`` strategies: what trains, what stays bit-identical, and feature caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import transferkit
from transferkit.backbones import resolve_backbone
from transferkit.config import load_config
from transferkit.strategies import STRATEGIES, count_parameters, strategy_settings
from transferkit.tasks.text_classification.model import build_model

# Every head run: no dropout in the head (dropout masks draw random numbers, and the cached and uncached
# paths must consume the generator identically), no baseline probe, no progress bar, no TensorBoard.
HEAD_RUN = [
    "head.dropout=0.0",
    "training.progress=false",
    "evaluation.pretrained_baseline=false",
    "output.tensorboard=false",
]


def _weights(run_dir: Path, prefix: str) -> dict[str, torch.Tensor]:
    tensors = load_file(run_dir / "model" / "model.safetensors")
    out = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    assert out, f"no {prefix}* tensors in {run_dir}"
    return out


def _fresh_model(run_dir: Path):
    """The model exactly as ``fit`` built it before training, rebuilt from the run's own config.

    tiny-bert has no pretrained weights: ``build_model`` seeds torch with ``training.seed`` and initialises
    backbone and head from it, so the same config always gives the same starting weights.
    """
    import json

    cfg = load_config(run_dir / "config.yaml")
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    return build_model(resolve_backbone(cfg.backbone), cfg, labels)


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol, rtol=0), (
            f"{key}: max diff {(a[key] - b[key]).abs().max():.3g}"
        )


@pytest.fixture(scope="module")
def head_runs(toy_csv_session: Path, tmp_path_factory: pytest.TempPathFactory):
    """``head_runs(name, *overrides)``: a ``head`` run on the toy CSV, made once per name."""
    root = tmp_path_factory.mktemp("head_runs")
    done: dict[str, transferkit.RunResult] = {}

    def run(name: str, *overrides: str):
        if name not in done:
            done[name] = transferkit.fit(
                train=str(toy_csv_session),
                backbone="tiny-bert",
                strategy="head",
                epochs=2,
                output=str(root / name),
                overrides=[*HEAD_RUN, *overrides],
            )
        return done[name]

    return run


def _tiny_model():
    cfg = load_config(None, ["data.train=x.csv", "backbone.name=tiny-bert"])
    return build_model(resolve_backbone(cfg.backbone), cfg, ["neg", "pos"]), cfg


@pytest.mark.parametrize("name", ["full", "head"])
def test_param_groups_hold_exactly_the_trainable_parameters(name: str) -> None:
    model, cfg = _tiny_model()
    cfg.strategy = cfg.strategy.model_validate({"name": name})
    plan = STRATEGIES.get(name).apply(model, strategy_settings(cfg.strategy), cfg.training)
    grouped = [id(p) for g in plan.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)), "a parameter sits in two optimizer groups"
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(grouped) == trainable
    assert all(g["lr"] > 0 for g in plan.param_groups)


def test_full_trains_everything() -> None:
    model, cfg = _tiny_model()
    model.requires_grad_(False)
    plan = STRATEGIES.get("full").apply(model, strategy_settings(cfg.strategy), cfg.training)
    assert all(p.requires_grad for p in model.parameters())
    trainable, total = count_parameters(model)
    assert trainable == total == sum(p.numel() for p in model.parameters())
    assert plan.cache is None and not plan.frozen_trunk
    head_ids = {id(p) for p in model.head.parameters()}
    head_lrs = {g["lr"] for g in plan.param_groups if all(id(p) in head_ids for p in g["params"])}
    trunk_lrs = {g["lr"] for g in plan.param_groups if not any(id(p) in head_ids for p in g["params"])}
    assert trunk_lrs == {cfg.training.learning_rate}
    assert head_lrs == {cfg.training.learning_rate * 10}


def test_head_trains_only_the_head() -> None:
    model, cfg = _tiny_model()
    cfg.strategy = cfg.strategy.model_validate({"name": "head"})
    plan = STRATEGIES.get("head").apply(model, strategy_settings(cfg.strategy), cfg.training)
    head_ids = {id(p) for p in model.head.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) in head_ids), name
    trainable, total = count_parameters(model)
    assert trainable == sum(p.numel() for p in model.head.parameters()) < total
    assert plan.cache == "features" and plan.frozen_trunk
    assert {g["lr"] for g in plan.param_groups} == {1e-3}  # the default head rate over a frozen trunk


def test_full_run_reports_every_parameter_trainable(tiny_run) -> None:
    m = tiny_run.metrics
    assert m["strategy"] == "full"
    assert m["trainable_parameters"] == m["total_parameters"] > 0


def test_full_run_changes_the_backbone(tiny_run) -> None:
    # The control for the test below: after `full`, the saved backbone is not the initial one.
    saved = _weights(tiny_run.run_dir, "backbone.")
    fresh = {f"backbone.{k}": v for k, v in _fresh_model(tiny_run.run_dir).backbone.state_dict().items()}
    assert saved.keys() == fresh.keys()
    assert any(not torch.equal(saved[k], fresh[k]) for k in saved)


def test_head_run_keeps_the_backbone_bit_identical(head_runs) -> None:
    result = head_runs("memory", "strategy.cache=memory")
    m = result.metrics
    assert m["trainable_parameters"] < m["total_parameters"]
    fresh_model = _fresh_model(result.run_dir)
    saved = _weights(result.run_dir, "backbone.")
    fresh = {f"backbone.{k}": v for k, v in fresh_model.backbone.state_dict().items()}
    assert saved.keys() == fresh.keys()
    for key in saved:
        assert torch.equal(saved[key], fresh[key]), key
    # ...while the head did train
    head = _weights(result.run_dir, "head.")
    initial = {f"head.{k}": v for k, v in fresh_model.head.state_dict().items()}
    assert any(not torch.equal(head[k], initial[k]) for k in head)
    assert m["trainable_parameters"] == sum(v.numel() for v in head.values())


def test_cached_head_equals_uncached_head(head_runs) -> None:
    cached = head_runs("memory", "strategy.cache=memory")
    uncached = head_runs("off", "strategy.cache='off'")
    _assert_close(_weights(cached.run_dir, "head."), _weights(uncached.run_dir, "head."), atol=1e-5)
    assert cached.metrics["test"]["accuracy"] == uncached.metrics["test"]["accuracy"]


def test_cached_head_equals_uncached_head_without_length_grouping(head_runs) -> None:
    # Same comparison with plain shuffled batches: features computed once equal features computed each step.
    cached = head_runs("memory-nogroup", "strategy.cache=memory", "training.group_by_length=false")
    uncached = head_runs("off-nogroup", "strategy.cache='off'", "training.group_by_length=false")
    assert not (uncached.run_dir / "cache").exists()
    _assert_close(_weights(cached.run_dir, "head."), _weights(uncached.run_dir, "head."), atol=1e-5)
    assert cached.metrics["test"]["accuracy"] == uncached.metrics["test"]["accuracy"]


def test_disk_cache_writes_npy_and_matches_memory(head_runs) -> None:
    disk = head_runs("disk", "strategy.cache=disk")
    memory = head_runs("memory", "strategy.cache=memory")
    files = sorted(p.name for p in (disk.run_dir / "cache").glob("*.npy"))
    assert files == ["test.npy", "train.npy", "validation.npy"]
    assert not (memory.run_dir / "cache").exists()
    _assert_close(_weights(disk.run_dir, "head."), _weights(memory.run_dir, "head."), atol=1e-5)
