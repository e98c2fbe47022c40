"""``lora``, ``adalora`` and ``ia3``: what trains, frozen weights, merged export, saved adapter, AdaLoRA's schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from peft.tuners.adalora import AdaLoraModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import transferkit
from transferkit.backbones import resolve_backbone
from transferkit.config import load_config
from transferkit.errors import ConfigError
from transferkit.remote_code.modeling_transferkit import (
    TransferkitConfig,
    TransferkitForSequenceClassification,
)
from transferkit.strategies import STRATEGIES, count_parameters, strategy_settings
from transferkit.strategies.peft.targets import auto_targets
from transferkit.tasks.text_classification.model import build_model

METHODS = ["lora", "adalora", "ia3"]
TEXTS = ["a great and wonderful film", "boring", "the plot was awful and the actor was dreadful, really"]
RUN = ["training.progress=false", "evaluation.pretrained_baseline=false", "output.tensorboard=false"]
TINY = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 64}
LLAMA = {"model_type": "llama", "hidden_size": 16, **TINY}
GPT2 = {"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2, "vocab_size": 64}


def _setup(name: str, *overrides: str, labels=("neg", "pos")):
    """A tiny-bert model (seeded, so rebuilt identically) with strategy ``name`` applied."""
    cfg = load_config(
        None, ["data.train=x.csv", "backbone.name=tiny-bert", f"strategy.name={name}", *overrides]
    )
    spec = resolve_backbone(cfg.backbone)
    model = build_model(spec, cfg, list(labels))
    plan = STRATEGIES.get(name).apply(model, strategy_settings(cfg.strategy), cfg.training)
    return model, plan, cfg, AutoTokenizer.from_pretrained(spec.tokenizer)


def _adapter_size(layer: BaseTunerLayer, name: str, settings) -> int:
    """Trainable weights of one adapted layer, from its shape and the settings alone."""
    d_in, d_out = layer.in_features, layer.out_features
    if name == "lora":
        return settings.r * (d_in + d_out)  # A: (r, in), B: (out, r)
    if name == "adalora":
        return settings.init_r * (d_in + d_out + 1)  # A, B and the singular values E: (r, 1)
    return d_in if layer.is_feedforward else d_out  # one scale per input (feed-forward) or output


def _train(model, plan, tok, steps: int) -> None:
    """A few optimizer steps the way the loop takes them (``after_backward`` before ``step``)."""
    opt = torch.optim.AdamW(plan.param_groups)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0, 0])
    model.train()
    for step in range(steps):
        model(**batch, labels=labels).loss.backward()
        if plan.after_backward is not None:
            plan.after_backward(step)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _spy_update_and_allocate(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The steps AdaLoRA's ``update_and_allocate`` is called with."""
    calls: list[int] = []
    original = AdaLoraModel.update_and_allocate

    def spy(self, step: int):
        calls.append(step)
        return original(self, step)

    monkeypatch.setattr(AdaLoraModel, "update_and_allocate", spy)
    return calls


def _reapplied(run_dir_or_adapter: Path, model):
    """``model`` (untrained, no adapter) with the saved adapter and head put back on."""
    PeftModel.from_pretrained(model.backbone, run_dir_or_adapter / "adapter")
    model.head.load_state_dict(load_file(run_dir_or_adapter / "adapter" / "head.safetensors"))
    return model.eval()


@pytest.mark.parametrize("name", METHODS)
def test_only_adapters_and_head_train(name: str) -> None:
    model, plan, cfg, _ = _setup(name)
    layers = [m for m in model.backbone.modules() if isinstance(m, BaseTunerLayer)]
    assert len(layers) == (6 if name == "ia3" else 12)  # tiny-bert: 2 blocks
    settings = strategy_settings(cfg.strategy)
    head = sum(p.numel() for p in model.head.parameters())
    expected = sum(_adapter_size(m, name, settings) for m in layers) + head
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith("head.") or ".lora_" in n or ".ia3_l." in n for n in trainable), trainable
    assert count_parameters(model)[0] == expected
    grouped = [p for g in plan.param_groups for p in g["params"]]
    assert len(grouped) == len(trainable) and sum(p.numel() for p in grouped) == expected
    assert type(model) is TransferkitForSequenceClassification  # adapters live inside model.backbone


@pytest.mark.parametrize("name", METHODS)
def test_training_leaves_base_weights_bit_identical_and_export_merges(name: str, tmp_path: Path) -> None:
    model, plan, cfg, tok = _setup(name, *(["strategy.total_steps=8"] if name == "adalora" else []))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if p.requires_grad}
    _train(model, plan, tok, steps=10)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"{n} changed"
    assert any(not torch.equal(p, adapters[n]) for n, p in model.backbone.named_parameters() if n in adapters)

    batch = tok(TEXTS, padding=True, return_tensors="pt")
    before = _logits(model, batch)
    exported = plan.unload_adapter(model)
    assert type(exported) is TransferkitForSequenceClassification
    assert not any(isinstance(m, BaseTunerLayer) for m in exported.modules())
    fresh = TransferkitForSequenceClassification(model.config)
    assert exported.state_dict().keys() == fresh.state_dict().keys()
    torch.testing.assert_close(_logits(exported, batch), before, atol=1e-4, rtol=0)
    # the adapted model is untouched
    torch.testing.assert_close(_logits(model, batch), before, atol=0, rtol=0)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"{n} changed by export"

    exported.save_pretrained(tmp_path / "model")  # loads in plain transformers, no peft needed
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    torch.testing.assert_close(_logits(loaded, batch), before, atol=1e-4, rtol=0)

    plan.save_extra(model, tmp_path)
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "head.safetensors"} <= files
    assert not (tmp_path / "adapter.partial").exists()
    base = _setup("full")[0]  # the same seeded weights, no adapter
    torch.testing.assert_close(_logits(_reapplied(tmp_path, base), batch), before, atol=1e-4, rtol=0)


def test_adalora_prunes_to_the_budget_and_the_saved_adapter_matches(tmp_path: Path, monkeypatch) -> None:
    calls = _spy_update_and_allocate(monkeypatch)
    schedule = ["strategy.total_steps=10", "strategy.tinit=2", "strategy.tfinal=3"]
    model, plan, cfg, tok = _setup("adalora", *schedule)
    _train(model, plan, tok, steps=12)  # past total_steps: the last phase keeps the final ranks
    assert calls == list(range(12))
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    before = _logits(model, batch)
    plan.save_extra(model, tmp_path)
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    kept = sum(sum(ranks) for ranks in saved["rank_pattern"].values())
    assert kept == strategy_settings(cfg.strategy).target_r * 12  # the budget: target_r x adapted layers
    nonzero = sum(int((p != 0).sum()) for n, p in model.backbone.named_parameters() if ".lora_E." in n)
    assert nonzero <= kept
    base = _setup("full")[0]  # PEFT resizes its layers to the saved ranks
    torch.testing.assert_close(_logits(_reapplied(tmp_path, base), batch), before, atol=1e-4, rtol=0)


def test_adalora_total_steps_comes_from_the_setting_then_max_steps_then_the_run() -> None:
    _, plan, _, _ = _setup("adalora", "strategy.total_steps=40")
    assert "40 steps (strategy.total_steps): warm-up 4, final 8" in plan.notes[1]
    assert plan.on_train_begin is None  # an explicit length is kept
    _, plan, _, _ = _setup("adalora", "training.max_steps=50")
    assert "50 steps (training.max_steps)" in plan.notes[1]
    assert plan.on_train_begin is None
    _, plan, _, _ = _setup("adalora")
    assert "set when training starts" in plan.notes[1]
    plan.on_train_begin(37)  # the loop reports the real length before step 0
    config = plan.after_backward.__self__.config  # the AdaLoRA schedule's PEFT config
    assert (
        config.total_step == 37
        and config.tinit > 0
        and config.tfinal > 0
        and config.tinit + config.tfinal < 37
    )
    with pytest.raises(ConfigError, match="no pruning"):
        _setup("adalora", "strategy.total_steps=5", "strategy.tinit=3", "strategy.tfinal=2")


@pytest.mark.parametrize("name", METHODS)
def test_fit_writes_a_merged_model_and_the_adapter(
    name: str, toy_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    calls = _spy_update_and_allocate(monkeypatch)
    overrides = [*RUN, "training.batch_size=16"] + (["strategy.total_steps=10"] if name == "adalora" else [])
    run = transferkit.fit(
        train=str(toy_csv),
        backbone="tiny-bert",
        strategy=name,
        epochs=2,
        output=str(tmp_path / "run"),
        overrides=overrides,
    )
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]
    assert calls == (list(range(metrics["training"]["steps"])) if name == "adalora" else [])
    files = {p.name for p in (run.run_dir / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "head.safetensors"} <= files
    tensors = load_file(run.run_dir / "model" / "model.safetensors")
    assert not any("lora_" in k or "ia3_" in k or "base_layer" in k for k in tensors)

    # The merged model in RUN/model predicts what the adapter re-applied to the untrained base predicts.
    predictor = transferkit.load(run.run_dir)
    cfg = load_config(run.run_dir / "config.yaml")
    base = _reapplied(run.run_dir, build_model(resolve_backbone(cfg.backbone), cfg, predictor.labels))
    batch = predictor.tokenizer(TEXTS, padding=True, return_tensors="pt")
    torch.testing.assert_close(predictor.logits(TEXTS), _logits(base, batch), atol=1e-4, rtol=0)


def _tiny(backbone: dict):
    backbone = dict(backbone)
    return AutoModel.from_config(AutoConfig.for_model(backbone.pop("model_type"), **backbone))


def _leaves(names: list[str]) -> list[str]:
    return [n.rsplit(".", 1)[-1] for n in names]


def test_auto_targets_by_family() -> None:
    llama = _tiny(LLAMA)
    names = auto_targets(llama, "lora").names
    assert _leaves(names) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] * 2
    ia3 = auto_targets(llama, "ia3")
    assert _leaves(ia3.names) == ["k_proj", "v_proj", "down_proj"] * 2
    assert ia3.feedforward == ["layers.0.mlp.down_proj", "layers.1.mlp.down_proj"]

    bert = _tiny({"model_type": "bert", "hidden_size": 16, **TINY})  # with a pooler
    assert "pooler.dense" not in auto_targets(bert, "lora").names  # only layers inside the blocks
    # the feed-forward output, not the attention output (also named ``output.dense``)
    assert auto_targets(bert, "ia3").feedforward == [
        "encoder.layer.0.output.dense",
        "encoder.layer.1.output.dense",
    ]

    mpnet = auto_targets(_tiny({"model_type": "mpnet", "hidden_size": 16, **TINY}), "lora")
    assert mpnet.how == "auto (every linear layer of the blocks)"  # a family without an entry
    assert _leaves(mpnet.names) == ["q", "k", "v", "o", "dense", "dense"] * 2


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("backbone", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_causal_lm_backbones_adapt_and_merge(name: str, backbone: dict) -> None:
    """Backbones with other layer names (and GPT-2's transposed Conv1D) need no change here."""
    model = TransferkitForSequenceClassification(TransferkitConfig(backbone=backbone, num_labels=2))
    extra = ["strategy.total_steps=8"] if name == "adalora" else []
    cfg = load_config(None, ["data.train=x.csv", f"strategy.name={name}", *extra])
    plan = STRATEGIES.get(name).apply(model, strategy_settings(cfg.strategy), cfg.training)
    ids = torch.randint(0, 64, (2, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    opt = torch.optim.AdamW(plan.param_groups)
    for step in range(3):
        model(**batch, labels=torch.tensor([0, 1])).loss.backward()
        if plan.after_backward is not None:
            plan.after_backward(step)
        opt.step()
        opt.zero_grad()
    model.eval()
    merged = plan.unload_adapter(model)
    torch.testing.assert_close(_logits(merged, batch), _logits(model, batch), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.name=lora", "strategy.r=0"], "strategy.r"),
        (["strategy.name=lora", "strategy.rank=4"], "strategy.rank: unknown setting"),
        (["strategy.name=lora", "strategy.target_modules=[]"], "strategy.target_modules"),
        (["strategy.name=lora", "strategy.bias=some"], "strategy.bias"),
        (["strategy.name=adalora", "strategy.target_r=12"], "target_r must be below"),
        (["strategy.name=adalora", "strategy.tinit=0.5", "strategy.tfinal=0.5"], "must be below 1"),
        (["strategy.name=adalora", "strategy.tinit=2.5"], "whole"),
        (["strategy.name=ia3", "strategy.r=4"], "strategy.r: unknown setting"),
    ],
)
def test_bad_settings_are_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["data.dataset=x", *overrides])


def test_listed_target_modules(tmp_path: Path) -> None:
    model, _, _, _ = _setup("lora", "strategy.target_modules=[query, value]")
    adapted = {n for n, m in model.backbone.named_modules() if isinstance(m, BaseTunerLayer)}
    assert adapted == {f"encoder.layer.{i}.attention.self.{k}" for i in (0, 1) for k in ("query", "value")}
    with pytest.raises(ConfigError, match=r"\['q_proj'\] match no backbone module"):
        _setup("lora", "strategy.target_modules=[q_proj]")
    model, _, _, _ = _setup("ia3", "strategy.target_modules=[key, output.dense]")
    ff = {n for n, m in model.backbone.named_modules() if isinstance(m, BaseTunerLayer) and m.is_feedforward}
    assert ff == {
        "encoder.layer.0.output.dense",
        "encoder.layer.1.output.dense",
    }  # not attention.output.dense
    with pytest.raises(ConfigError, match="feedforward_modules must be among"):
        _setup("ia3", "strategy.target_modules=[key]", "strategy.feedforward_modules=[output.dense]")


@pytest.mark.parametrize("merge", [True, False])
def test_in_place_export_unloads_without_a_copy(merge: bool) -> None:
    """The end of a run exports in place (no second model in memory): merged, or the pretrained trunk back."""
    model, plan, _, tok = _setup("lora", f"strategy.merge={str(merge).lower()}")
    # frozen while adapted; PEFT names an adapted layer's own weight "<layer>.base_layer.weight"
    pretrained = {
        n.replace(".base_layer", ""): p.detach().clone()
        for n, p in model.backbone.named_parameters()
        if not p.requires_grad
    }
    _train(model, plan, tok, steps=10)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    before = _logits(model, batch)
    out = plan.unload_adapter(model, in_place=True)
    assert out is model
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    assert model.state_dict().keys() == TransferkitForSequenceClassification(model.config).state_dict().keys()
    if merge:
        torch.testing.assert_close(_logits(model, batch), before, atol=1e-4, rtol=0)
    else:  # the trunk is the pretrained one again, bit for bit
        restored = dict(model.backbone.named_parameters())
        assert restored.keys() == pretrained.keys()
        for n, p in restored.items():
            assert torch.equal(p, pretrained[n]), n
