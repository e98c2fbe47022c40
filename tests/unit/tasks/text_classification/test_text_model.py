"""The task model: output widths per problem type, pooling, and agreement with plain transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoTokenizer

import transferkit
from transferkit.backbones import resolve_backbone
from transferkit.config import load_config
from transferkit.remote_code.modeling_transferkit import pool
from transferkit.tasks.text_classification.model import build_model

TEXTS = ["a great and wonderful film", "boring", "the plot was awful and the actor was dreadful, really"]


def _cfg(*overrides: str):
    return load_config(None, ["data.train=x.csv", "backbone.name=tiny-bert", *overrides])


def _model(*overrides: str, labels=("neg", "pos")):
    cfg = _cfg(*overrides)
    spec = resolve_backbone(cfg.backbone)
    return build_model(spec, cfg, list(labels)).eval(), AutoTokenizer.from_pretrained(spec.tokenizer)


@pytest.mark.parametrize(
    ("problem", "labels", "width", "problem_type"),
    [
        ("single_label", ["a", "b", "c"], 3, "single_label_classification"),
        ("multi_label", ["x", "y", "z", "w"], 4, "multi_label_classification"),
        ("regression", [], 1, "regression"),
    ],
)
def test_output_width_and_problem_type(problem, labels, width, problem_type) -> None:
    model, tok = _model(f"task.problem={problem}", labels=labels)
    assert model.config.num_labels == width
    assert model.config.problem_type == problem_type
    assert list(model.config.id2label.values()) == (labels or ["value"])
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (len(TEXTS), width)
    assert out.loss is None


def test_loss_matches_problem_type() -> None:
    model, tok = _model("task.problem=multi_label", labels=["x", "y"])
    batch = tok(TEXTS[:2], padding=True, return_tensors="pt")
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        out = model(**batch, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels)
    assert torch.allclose(out.loss, expected)


def test_mlp_head() -> None:
    model, _ = _model("head.kind=mlp", "head.hidden_size=16")
    linears = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 16), (16, 2)]


def test_pool_by_hand() -> None:
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # (B=2, T=3, D=2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    mean = pool(hidden, mask, "mean")
    assert torch.allclose(mean[0], hidden[0, :2].mean(0))
    assert torch.allclose(mean[1], hidden[1].mean(0))
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])
    assert torch.allclose(pool(hidden, None, "mean"), hidden.mean(1))


def test_mean_and_cls_pooling_differ() -> None:
    mean_model, tok = _model("backbone.pooling=mean")
    cls_model, _ = _model("backbone.pooling=cls")
    # Same seed, same weights: only the pooling differs.
    for (name, a), (_, b) in zip(
        mean_model.state_dict().items(), cls_model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        mean, cls = mean_model.features(**batch), cls_model.features(**batch)
    assert mean.shape == cls.shape == (len(TEXTS), 32)
    assert not torch.allclose(mean, cls, atol=1e-3)


def test_mean_pooling_ignores_padding() -> None:
    model, tok = _model("backbone.pooling=mean")
    short, long = TEXTS[1], TEXTS[2]
    alone = tok([short], return_tensors="pt")
    padded = tok([short, long], padding=True, return_tensors="pt")
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]  # the short text really is padded
    with torch.no_grad():
        a = model.features(**alone)[0]
        b = model.features(**padded)[0]
    assert torch.allclose(a, b, atol=1e-5)


_PIPELINE = textwrap.dedent(
    """
    import json, sys
    sys.modules["transferkit"] = None  # any import of transferkit now fails: plain transformers only
    from transformers import pipeline
    texts = json.loads(sys.argv[2])
    if sys.argv[3] == "trust":
        p = pipeline("text-classification", model=sys.argv[1], trust_remote_code=True)
    else:
        p = pipeline("text-classification", model=sys.argv[1])
    print(json.dumps(p(texts, top_k=None)))
    """
)


@pytest.fixture(scope="module")
def pipelines(tiny_run) -> dict[str, tuple[int, str, str]]:
    """Runs the snippet with and without ``trust_remote_code``, both at once (each start-up takes seconds)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    model_dir = str(tiny_run.run_dir / "model")
    procs = {
        mode: subprocess.Popen(
            [sys.executable, "-c", _PIPELINE, model_dir, json.dumps(TEXTS), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for mode in ("trust", "no-trust")
    }
    out = {}
    for mode, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[mode] = (proc.returncode, stdout, stderr)
    return out


def test_plain_transformers_pipeline_agrees(tiny_run, pipelines) -> None:
    code, stdout, stderr = pipelines["trust"]
    assert code == 0, stderr[-2000:]
    plain = json.loads(stdout.strip().splitlines()[-1])
    # plain transformers runs fp32; the run may have trained in bf16 (training.precision=auto on a bf16 CPU)
    ours = transferkit.load(tiny_run.run_dir, precision="fp32").predict(TEXTS)
    assert len(plain) == len(ours) == len(TEXTS)
    for theirs, mine in zip(plain, ours, strict=True):
        scores = {d["label"]: d["score"] for d in theirs}
        assert set(scores) == set(mine["scores"])
        for label, p in mine["scores"].items():
            assert scores[label] == pytest.approx(p, abs=1e-5)
        assert theirs[0]["label"] == mine["label"]  # top_k=None sorts by score


def test_plain_transformers_needs_trust_remote_code(pipelines) -> None:
    code, stdout, stderr = pipelines["no-trust"]
    assert code != 0, f"loaded without trust_remote_code: {stdout[-500:]}"
    assert "trust_remote_code" in stderr
