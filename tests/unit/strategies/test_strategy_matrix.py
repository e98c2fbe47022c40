"""The strategy matrix: every registered strategy gets a row, and six properties are checked per row.

Columns (one test function each, parametrized over every registered strategy with a plan of its own;
``auto`` picks one of them before training and is tested in ``tests/unit/tasks/test_auto.py``):

1. ``trainable_parameters`` / ``total_parameters`` in ``metrics.json`` equal counts computed independently
   from a freshly built model (layer groups of the backbone contract, or adapter parameter names).
2. Frozen weights stay bit-identical: every backbone tensor of the saved model that the strategy must not
   train equals the same tensor of the starting point, and every tensor it trains has moved.
3. The saved model is the best evaluation's state (the checkpoint at ``best_validation_metric.step``).
4. Save -> load -> identical predictions: ``transferkit.load(run).evaluate(test file)`` reproduces the
   test metrics recorded by ``fit`` (computed there by the in-memory model) within 1e-6.
5. Resume equals uninterrupted: a copy of the run cut back to an early checkpoint and resumed ends with the
   same metrics and weights as the uninterrupted run.
6. Cached equals uncached, where a strategy caches frozen features (``head``, ``top-k``).

Adding a strategy means adding a row to ``ROWS``: a registered strategy without one fails every column.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import transferkit
import transferkit.tasks.recipe as recipe
import transferkit.tasks.text_classification.fit as text_fit
from transferkit.backbones import resolve_backbone
from transferkit.backbones.contract import layer_groups
from transferkit.config import load_config
from transferkit.strategies import STRATEGIES, strategy_settings
from transferkit.strategies.base import trainable_strategies
from transferkit.tasks.text_classification.model import build_model

# ---------------------------------------------------------------------------------------------- the rows

ALL_GROUPS = (0, 1, 2)  # tiny-bert: embeddings, block.0, block.1
ADAPTERS = "adapters"  # PEFT methods: adapters train inside the frozen trunk and are merged on export
NO_DROPOUT = ("head.dropout=0.0", "backbone.dropout=0.0")  # cached and uncached paths then agree exactly


@dataclass(frozen=True)
class Row:
    """What one strategy is expected to do on tiny-bert in a 3-epoch run.

    Attributes:
        trains: Layer groups whose weights train (the head always trains), or ``ADAPTERS``.
        overrides: Strategy settings (and anything else) the row runs with.
        resume: None when resume applies; otherwise why the column is N/A.
        cache_off: The override that turns feature caching off (the row itself caches); None: N/A.
        adapter_init: For ``ADAPTERS``: (name part, value) of the adapter tensors that start at a constant.
    """

    trains: tuple[int, ...] | str
    overrides: tuple[str, ...] = ()
    resume: str | None = None
    cache_off: str | None = None
    adapter_init: tuple[str, float] | None = None


ROWS: dict[str, Row] = {
    "full": Row(ALL_GROUPS),
    "head": Row((), ("strategy.cache=memory", *NO_DROPOUT), cache_off="strategy.cache=off"),
    "linear-probe": Row((), resume="fitted in closed form: no gradient steps, so no checkpoints to resume"),
    "top-k": Row(
        (2,), ("strategy.k=1", "strategy.cache=memory", *NO_DROPOUT), cache_off="strategy.cache=off"
    ),
    # head first, then block.1 from epoch 1 and block.0 from epoch 2: the embeddings never train in 3 epochs
    "gradual": Row((1, 2), ("strategy.every_epochs=1",)),
    "discriminative": Row(ALL_GROUPS),
    "lp-ft": Row(ALL_GROUPS),
    "lora": Row(ADAPTERS, adapter_init=("lora_B", 0.0)),
    # the schedule spans the whole 9-step run; AdaLoRA's singular values start at zero
    "adalora": Row(ADAPTERS, ("strategy.total_steps=9",), adapter_init=("lora_E", 0.0)),
    "ia3": Row(ADAPTERS, adapter_init=("ia3_l", 1.0)),
}

# (column, strategy) -> reason: a bug in src that the column exposes; the test is written as it should pass.
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # (column, strategy) -> reason, for a strict xfail

# ---------------------------------------------------------------------------------------------- the runs

EPOCHS = 3  # 72 training rows / batch 32 = 3 optimizer steps per epoch, 9 in all
RESUME_FROM = 4  # checkpoints at 2, 4, 6, 8 (every 2 steps) and 3, 6, 9 (evaluations): 4 is mid-epoch 2
RUN = [
    "training.progress=false",
    "training.learning_rate=1e-3",
    "training.checkpoint_every_steps=2",
    "training.keep_checkpoints=100",  # keep the early checkpoints the resume column cuts back to
    "evaluation.pretrained_baseline=false",
    "output.tensorboard=false",
]
_STEP = re.compile(r"^step-(\d+)$")
_POS = ("great", "wonderful", "excellent", "superb")
_NEG = ("awful", "boring", "terrible", "dreadful")
_FILLER = ("the", "a", "movie", "plot", "actor", "scene", "story", "film", "was", "is", "and", "of", "it")


def _matrix_frames(sizes: dict[str, int], seed: int = 0) -> dict[str, pd.DataFrame]:
    """Balanced ``text,label`` splits, label set by one keyword among 1-8 filler words; no text repeats."""
    rng, seen, out = random.Random(seed), set(), {}
    for split, n in sizes.items():
        rows: list[tuple[str, str]] = []
        while len(rows) < n:
            label = ("pos", "neg")[len(rows) % 2]
            words = [rng.choice(_FILLER) for _ in range(rng.randint(1, 8))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(_POS if label == "pos" else _NEG))
            text = " ".join(words)
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
        out[split] = pd.DataFrame(rows, columns=["text", "label"])
    return out


@dataclass
class MatrixRun:
    """A finished run and how often it computed frozen features ahead of training."""

    run_dir: Path
    metrics: dict
    cache_calls: int


def _fit(data: dict[str, Path], output: Path, *overrides: str, resume: Path | None = None) -> MatrixRun:
    """``transferkit.fit`` with the feature extractors counted and the PNG plots skipped.

    The plots are not under test here and take about half of a tiny run's wall time.
    """
    calls = {"n": 0}

    def counted(fn):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            return fn(*args, **kwargs)

        return wrapper

    with pytest.MonkeyPatch.context() as mp:
        api = text_fit  # the text recipe
        import transferkit.strategies.cache as cache  # the shared frozen-feature pass calls it

        mp.setattr(cache, "extract_features", counted(cache.extract_features))
        mp.setattr(api, "extract_hidden", counted(api.extract_hidden))
        mp.setattr(recipe, "save_confusion_matrix", lambda *a, **k: None)  # the shared run-folder writer
        mp.setattr(recipe, "save_training_curves", lambda *a, **k: None)
        if resume is not None:
            result = transferkit.fit(resume=resume)
        else:
            result = transferkit.fit(
                train=str(data["train"]),
                validation=str(data["validation"]),
                test=str(data["test"]),
                backbone="tiny-bert",
                epochs=EPOCHS,
                output=str(output),
                overrides=[*RUN, *overrides],
            )
    return MatrixRun(Path(result.run_dir), result.metrics, calls["n"])


def strategy_plan_starts_from_probe(name: str) -> bool:
    """Whether the strategy initialises its head from the linear probe (on tiny-bert's linear head)."""
    cfg = load_config(
        None, ["data.dataset=rotten_tomatoes", "backbone.name=tiny-bert", f"strategy.name={name}"]
    )
    model = build_model(resolve_backbone(cfg.backbone), cfg, ["neg", "pos"])
    plan = STRATEGIES.get(name).apply(model, strategy_settings(cfg.strategy), cfg.training)
    return plan.probe_init


def _row(name: str) -> Row:
    if name not in ROWS:
        pytest.fail(
            f"strategy {name!r} is registered but has no row in ROWS ({__file__}): adding a strategy means "
            "adding a row (what it trains, its settings, whether resume and caching apply)"
        )
    return ROWS[name]


@pytest.fixture(scope="module")
def matrix_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train (72) / validation (24) / test (24) CSV files."""
    root = tmp_path_factory.mktemp("matrix_data")
    paths = {}
    for split, frame in _matrix_frames({"train": 72, "validation": 24, "test": 24}).items():
        paths[split] = root / f"{split}.csv"
        frame.to_csv(paths[split], index=False)
    return paths


@pytest.fixture(scope="module")
def matrix_runs(matrix_data, tmp_path_factory: pytest.TempPathFactory):
    """``matrix_runs(name)``: the uninterrupted run of a strategy with its row's settings, made once."""
    root = tmp_path_factory.mktemp("matrix_runs")
    done: dict[str, MatrixRun] = {}

    def get(name: str) -> MatrixRun:
        if name not in done:
            row = _row(name)
            done[name] = _fit(matrix_data, root / name, f"strategy.name={name}", *row.overrides)
        return done[name]

    return get


def _checkpoints(run_dir: Path) -> dict[int, Path]:
    folder = run_dir / "checkpoints"
    found = [p for p in folder.iterdir() if _STEP.match(p.name)] if folder.is_dir() else []
    return {int(_STEP.match(p.name).group(1)): p for p in found}


@pytest.fixture(scope="module")
def matrix_resumed(matrix_data, matrix_runs, tmp_path_factory: pytest.TempPathFactory):
    """``matrix_resumed(name)``: the run as a kill right after step ``RESUME_FROM`` leaves it, then resumed.

    The interrupted run is the uninterrupted one's folder cut back: its config, its logs and its checkpoints
    up to ``RESUME_FROM`` (training is deterministic, so an identical second run would write the same).
    Nothing written after that (later checkpoints, model, metrics, labels, card) is copied.
    """
    root = tmp_path_factory.mktemp("matrix_resumed")
    done: dict[str, MatrixRun] = {}

    def get(name: str) -> MatrixRun:
        if name not in done:
            source = matrix_runs(name).run_dir
            target = root / name
            (target / "checkpoints").mkdir(parents=True)
            shutil.copy(source / "config.yaml", target / "config.yaml")
            if (source / "logs").is_dir():
                shutil.copytree(source / "logs", target / "logs")
            checkpoints = _checkpoints(source)
            assert RESUME_FROM in checkpoints, (
                f"{name}: no checkpoint at step {RESUME_FROM}: {sorted(checkpoints)}"
            )
            for step, path in checkpoints.items():
                if step <= RESUME_FROM:
                    shutil.copytree(path, target / "checkpoints" / path.name)
            done[name] = _fit(matrix_data, target, resume=target)
        return done[name]

    return get


def _params(column: str) -> list:
    """Every registered strategy, with the column's known bugs marked as strict xfails."""
    out = []
    for name in trainable_strategies():
        reason = KNOWN_BUGS.get((column, name))
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


# ---------------------------------------------------------------------------------------------- helpers


def _starting_point(run_dir: Path):
    """(cfg, model) exactly as ``fit`` built them before training, rebuilt from the run's own config.

    tiny-bert has no pretrained weights: ``build_model`` seeds torch with ``training.seed`` before
    initialising backbone and head, so the same config gives the same starting weights
    (``test_starting_point_is_reproducible``).
    """
    cfg = load_config(run_dir / "config.yaml")
    labels = json.loads((run_dir / "labels.json").read_text())["labels"]
    return cfg, build_model(resolve_backbone(cfg.backbone), cfg, labels)


def _group_of(model) -> dict[str, int]:
    """Parameter name -> index of its backbone layer group."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: g
        for g, (_, modules) in enumerate(layer_groups(model.backbone))
        for m in modules
        for p in m.parameters()
    }


def _saved(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


def _max_diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> dict[str, float]:
    """Tensors of ``a`` and ``b`` (same keys) that differ by more than ``atol``, with their max difference."""
    assert a.keys() == b.keys()
    diffs = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a}
    return {k: d for k, d in diffs.items() if d > atol}


def _checkpoint_weights(
    run_dir: Path, start: dict[str, torch.Tensor], step: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The weights of checkpoint ``step`` (default: the last; the saved model if there is none).

    Returns ``(weights under the starting point's names, adapter weights)``: a checkpoint of a head trained
    on cached features names its tensors without ``head.``, and PEFT keeps a base layer's weight under
    ``base_layer``.
    """
    checkpoints = _checkpoints(run_dir)
    if not checkpoints:
        return _saved(run_dir), {}
    path = checkpoints[max(checkpoints) if step is None else step] / "weights.safetensors"
    weights, adapters = {}, {}
    for key, value in load_file(path).items():
        name = key.replace(".base_layer.", ".")
        name = name if name in start else f"head.{name}"
        if name in start:
            weights[name] = value
        else:
            adapters[key] = value
    return weights, adapters


def _numbers(split: dict) -> dict[str, float]:
    return {k: v for k, v in split.items() if isinstance(v, int | float)}


# ---------------------------------------------------------------------------------------------- the columns


def test_every_registered_strategy_has_a_row() -> None:
    names = set(trainable_strategies())
    assert not names - ROWS.keys(), (
        f"registered strategies without a row in ROWS: {sorted(names - ROWS.keys())}"
    )
    assert not ROWS.keys() - names, (
        f"rows for strategies that are not registered: {sorted(ROWS.keys() - names)}"
    )


def test_starting_point_is_reproducible() -> None:
    """Column 2 compares against a rebuilt starting point: the rebuild must be exact, and seed-dependent."""

    def build(seed: int) -> dict[str, torch.Tensor]:
        cfg = load_config(None, ["data.train=x.csv", "backbone.name=tiny-bert", f"training.seed={seed}"])
        return build_model(resolve_backbone(cfg.backbone), cfg, ["neg", "pos"]).state_dict()

    first, again, other = build(7), build(7), build(8)
    assert all(torch.equal(first[k], again[k]) for k in first)
    moved = [k for k in first if first[k].is_floating_point() and not torch.equal(first[k], other[k])]
    assert "backbone.encoder.layer.0.attention.self.query.weight" in moved
    assert "head.layers.1.weight" in moved


@pytest.mark.parametrize("name", _params("trainable"))
def test_trainable_parameter_counts(name: str, matrix_runs) -> None:
    row = _row(name)
    run = matrix_runs(name)
    cfg, model = _starting_point(run.run_dir)
    head = sum(p.numel() for p in model.head.parameters())
    if row.trains == ADAPTERS:
        STRATEGIES.get(name).apply(model, strategy_settings(cfg.strategy), cfg.training)
        adapters = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n or "ia3_" in n)
        assert adapters > 0, f"{name}: no adapter parameters found in the adapted model"
        expected = adapters + head
    else:
        groups = layer_groups(model.backbone)
        expected = head + sum(p.numel() for g in row.trains for m in groups[g][1] for p in m.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert (run.metrics["trainable_parameters"], run.metrics["total_parameters"]) == (expected, total)
    assert 0 < expected <= total


@pytest.mark.parametrize("name", _params("frozen"))
def test_frozen_weights_stay_bit_identical(name: str, matrix_runs) -> None:
    """Checked in the saved model and at the end of training (the last checkpoint, adapters unmerged)."""
    row = _row(name)
    run = matrix_runs(name)
    _, model = _starting_point(run.run_dir)
    start, saved = model.state_dict(), _saved(run.run_dir)
    final, adapters = _checkpoint_weights(run.run_dir, start)
    assert saved.keys() == start.keys()
    backbone = {k for k in start if k.startswith("backbone.")}

    def changed(weights: dict[str, torch.Tensor]) -> set[str]:
        return {k for k in weights if not torch.equal(weights[k], start[k])}

    head = {k for k in start if k.startswith("head.")}
    assert head <= final.keys() and head <= changed(final), "the head must train in every strategy"
    if row.trains == ADAPTERS:
        # Unmerged, every base weight is untouched and the adapters moved away from their start.
        assert not changed(final) & backbone, f"base weights changed: {sorted(changed(final) & backbone)}"
        part, value = row.adapter_init
        constant = {k: v for k, v in adapters.items() if f".{part}." in k}
        assert constant, f"{name}: the checkpoint holds no {part} adapter weights"
        unmoved = sorted(k for k, v in constant.items() if torch.all(v == value))
        assert not unmoved, f"adapters still at their initial {value}: {unmoved}"
        # Merged into the saved model, the adapters may change the weights of the adapted layers only.
        targets = json.loads((run.run_dir / "adapter" / "adapter_config.json").read_text())["target_modules"]
        adapted = {k for k in saved if any(k.startswith(f"backbone.{t}.") for t in targets)}
        moved = changed(saved) & backbone
        assert adapted and moved, f"{name}: merging the trained adapters into {targets} changed no weight"
        assert not moved - adapted, f"not adapted, yet changed: {sorted(moved - adapted)}"
        return
    group = _group_of(model)
    assert backbone == group.keys(), "every backbone tensor belongs to one layer group"
    trained = {k for k in backbone if group[k] in row.trains}
    assert not changed(saved) & (backbone - trained), (
        f"frozen, yet changed: {sorted(changed(saved) & (backbone - trained))}"
    )
    assert not changed(final) & (backbone - trained), (
        f"frozen, yet trained: {sorted(changed(final) & (backbone - trained))}"
    )
    assert trained <= final.keys(), "the last checkpoint lacks weights that train"
    assert not trained - changed(final), f"trained, yet unchanged: {sorted(trained - changed(final))}"


@pytest.mark.parametrize("name", _params("best"))
def test_saved_model_is_the_best_evaluation(name: str, matrix_runs) -> None:
    """The loop restores the best evaluation's state: the saved model is that checkpoint and scores its value."""
    run = matrix_runs(name)
    best = run.metrics["best_validation_metric"]
    assert best["name"] == "f1_macro"
    assert run.metrics["validation"]["f1_macro"] == pytest.approx(best["value"], abs=1e-9)
    if best["step"] is None:  # fitted in closed form: no evaluations during training
        assert _row(name).resume is not None
        return
    start, saved = _starting_point(run.run_dir)[1].state_dict(), _saved(run.run_dir)
    if best["step"] == 0:  # the head started as the fitted probe and that start stayed the best evaluation
        assert strategy_plan_starts_from_probe(name)
        first = json.loads((run.run_dir / "logs" / "train_log.jsonl").read_text().splitlines()[0])
        assert first["step"] == 0 and first["validation"]["f1_macro"] == pytest.approx(best["value"])
        moved = [k for k in start if k.startswith("backbone.") and not torch.equal(saved[k], start[k])]
        assert not moved, f"the step-0 state was kept, yet backbone weights moved: {moved}"
        return
    at_best, _ = _checkpoint_weights(run.run_dir, start, step=best["step"])
    if _row(name).trains == ADAPTERS:  # the saved model is merged: compare what merging leaves alone
        targets = json.loads((run.run_dir / "adapter" / "adapter_config.json").read_text())["target_modules"]
        at_best = {
            k: v for k, v in at_best.items() if not any(k.startswith(f"backbone.{t}.") for t in targets)
        }
    assert {k for k in start if k.startswith("head.")} <= at_best.keys()
    off = _max_diffs({k: saved[k] for k in at_best}, at_best, atol=0.0)
    assert not off, f"the saved model is not the step-{best['step']} state (max abs diff per tensor): {off}"


@pytest.mark.parametrize("name", _params("save_load"))
def test_saved_model_reproduces_the_recorded_test_metrics(name: str, matrix_runs, matrix_data) -> None:
    run = matrix_runs(name)
    recorded = run.metrics["test"]
    again = transferkit.load(run.run_dir).evaluate(matrix_data["test"])
    assert again["num_examples"] == recorded["num_examples"] == 24
    for key in ("accuracy", "f1_macro", "loss", "log_loss"):
        assert again[key] == pytest.approx(recorded[key], abs=1e-6, rel=0), key


@pytest.mark.parametrize("name", _params("resume"))
def test_resume_equals_uninterrupted(name: str, matrix_runs, matrix_resumed) -> None:
    row = _row(name)
    if row.resume is not None:
        pytest.skip(f"N/A for {name}: {row.resume}")
    whole, resumed = matrix_runs(name), matrix_resumed(name)
    assert resumed.metrics["training"]["resumed_from_step"] == RESUME_FROM  # it resumed; not retrained
    assert whole.metrics["training"]["resumed_from_step"] is None
    assert resumed.metrics["training"]["steps"] == whole.metrics["training"]["steps"] == 3 * EPOCHS
    assert resumed.metrics["best_validation_metric"] == whole.metrics["best_validation_metric"]
    for split in ("test", "validation"):
        a, b = _numbers(whole.metrics[split]), _numbers(resumed.metrics[split])
        assert a.keys() == b.keys()
        off = {k: (a[k], b[k]) for k in a if abs(a[k] - b[k]) > 1e-6}
        assert not off, f"{split} metrics differ (uninterrupted, resumed): {off}"
    assert not _max_diffs(_saved(whole.run_dir), _saved(resumed.run_dir), atol=1e-6)
    # The saved model is the best evaluation's: when that came before the interruption, the weights above
    # agree whatever the resumed steps did. The last checkpoint holds the weights at the end of training.
    last_whole, last_resumed = _checkpoints(whole.run_dir), _checkpoints(resumed.run_dir)
    assert max(last_whole) == max(last_resumed) == 3 * EPOCHS
    for part in ("weights", "best"):
        a = load_file(last_whole[max(last_whole)] / f"{part}.safetensors")
        b = load_file(last_resumed[max(last_resumed)] / f"{part}.safetensors")
        off = _max_diffs(a, b, atol=1e-6)
        assert not off, f"{part} at the last step differ (max abs diff per tensor): {off}"


@pytest.mark.parametrize("name", _params("cache"))
def test_cached_equals_uncached(name: str, matrix_runs, matrix_data, tmp_path: Path) -> None:
    row = _row(name)
    if row.cache_off is None:
        pytest.skip(f"N/A for {name}: it caches no frozen features")
    cached = matrix_runs(name)
    uncached = _fit(
        matrix_data, tmp_path / "uncached", f"strategy.name={name}", *row.overrides, row.cache_off
    )
    assert cached.cache_calls > 0, "the cached run computed no frozen features ahead of training"
    # a head that starts from the probe computes frozen features once for the probe (one pass per split);
    # its training steps re-run the trunk, as the cached run's do not
    probe_passes = 3 if strategy_plan_starts_from_probe(name) else 0
    assert uncached.cache_calls == probe_passes, "the uncached run computed frozen features for training"
    assert not _max_diffs(_saved(cached.run_dir), _saved(uncached.run_dir), atol=1e-5)
    assert cached.metrics["test"]["accuracy"] == uncached.metrics["test"]["accuracy"]


@pytest.mark.parametrize("name", _params("precision"))
def test_trains_under_bf16(name: str, matrix_data, tmp_path: Path) -> None:
    """The precision column: every strategy trains under bf16 autocast (on any CPU; only slower without
    native bf16), records it, keeps fp32 master weights, and its saved model reproduces
    the recorded test metrics when loaded at the run's precision."""
    row = _row(name)
    run = _fit(
        matrix_data, tmp_path / "bf16", f"strategy.name={name}", *row.overrides, "training.precision=bf16"
    )
    assert run.metrics["training"]["precision"]["name"] == "bf16"
    assert json.loads((run.run_dir / "labels.json").read_text())["precision"] == "bf16"
    log = run.run_dir / "logs" / "train_log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    losses = [r["loss"] for r in records if "loss" in r] + [
        r["train_loss"] for r in records if "train_loss" in r
    ]
    assert all(math.isfinite(x) for x in losses), losses
    assert losses or run.metrics["training"]["steps"] == 0  # closed-form heads (linear-probe) take no steps
    saved = _saved(run.run_dir)
    assert all(
        t.dtype == torch.float32 for t in saved.values() if t.is_floating_point()
    )  # fp32 master weights
    model = transferkit.load(run.run_dir)
    assert model.precision.name == "bf16"
    again = model.evaluate(matrix_data["test"])
    for key in ("accuracy", "f1_macro"):
        assert again[key] == pytest.approx(run.metrics["test"][key], abs=1e-6), key
