"""Generation data: reading, chat rendering, completion-only labels, packing with isolated attention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transferkit.backbones import resolve_backbone
from transferkit.config import BackboneConfig, GenerationTaskConfig
from transferkit.errors import DataError
from transferkit.tasks.generation.data import (
    IGNORE,
    Example,
    LMCollator,
    LMDataset,
    encode,
    pack,
    read_examples,
    render,
)
from transferkit.tasks.generation.generate import exact_match, perplexity, rouge_l
from transferkit.tasks.generation.model import build_causal_lm, lm_forward, load_tokenizer, nll_per_example

CFG = GenerationTaskConfig()


@pytest.fixture(scope="module")
def spec():
    return resolve_backbone(BackboneConfig(name="tiny-llama"))


@pytest.fixture(scope="module")
def tok(spec):
    return load_tokenizer(spec.tokenizer)


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_read_pairs_and_chats(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "d.jsonl",
        [
            {"prompt": "Q: 2+2?", "completion": " 4"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        ],
    )
    pair, chat = read_examples(path, CFG)
    assert (pair.prompt, pair.completion, pair.messages) == ("Q: 2+2?", " 4", None)
    assert chat.completion == "hello" and chat.messages[0]["content"] == "hi"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"prompt": "x"}, "line 2: no text field 'completion'"),
        ("{not json", "line 2: not valid JSON"),
        (
            {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]},
            "line 2: the last message",
        ),
        ({"messages": [{"role": "user"}]}, "line 2: messages[0]"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path: Path, record, expected: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "ok", "completion": "ok"}, record])
    with pytest.raises(DataError) as info:
        read_examples(path, CFG)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_custom_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [{"q": "a", "a": "b"}])
    (ex,) = read_examples(path, GenerationTaskConfig(prompt_column="q", completion_column="a"))
    assert (ex.prompt, ex.completion) == ("a", "b")


def test_labels_cover_the_completion_and_eos_only(tok) -> None:
    ids, labels, truncated = encode(Example("Question: capital?", " Paris"), tok, CFG, 64)
    p_len = len(tok("Question: capital?")["input_ids"])
    c_ids = tok(" Paris", add_special_tokens=False)["input_ids"]
    assert not truncated
    assert ids == tok("Question: capital?")["input_ids"] + c_ids + [tok.eos_token_id]
    assert labels[:p_len] == [IGNORE] * p_len
    assert labels[p_len:] == c_ids + [tok.eos_token_id]
    _, no_eos, _ = encode(Example("Q", " P"), tok, GenerationTaskConfig(add_eos=False), 64)
    assert tok.eos_token_id not in no_eos


def test_truncation_keeps_the_completion(tok) -> None:
    ids, labels, truncated = encode(Example("word " * 50, " Paris"), tok, CFG, 12)
    assert truncated and len(ids) == 12
    c_ids = tok(" Paris", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids[-len(c_ids) :] == c_ids and labels[-len(c_ids) :] == c_ids


def test_chat_rendering_splits_prompt_and_completion(tok) -> None:
    msgs = [{"role": "user", "content": "capital?"}, {"role": "assistant", "content": "Paris"}]
    prompt, completion, templated = render(Example(None, "Paris", msgs), tok, CFG)
    assert templated and prompt.endswith("<|assistant|>") and "capital?" in prompt
    assert completion.startswith("Paris") and "</s>" in completion
    # a pair with generation.chat_template renders identically
    assert render(Example("capital?", "Paris"), tok, GenerationTaskConfig(chat_template=True)) == (
        prompt,
        completion,
        True,
    )
    ids, labels, _ = encode(Example(None, "Paris", msgs), tok, CFG, 64)
    assert ids.count(tok.eos_token_id) == 1  # the template's end token is not doubled


def test_packing_restarts_positions_and_fills_rows() -> None:
    rows = [([1, 2, 3], [IGNORE, 2, 3]), ([4, 5], [IGNORE, 5]), ([6, 7, 8, 9], [IGNORE, 7, 8, 9])]
    packed = pack(rows, max_length=6)
    assert [r["input_ids"] for r in packed] == [[1, 2, 3, 4, 5], [6, 7, 8, 9]]
    assert packed[0]["position_ids"] == [0, 1, 2, 0, 1]
    assert packed[0]["lm_labels"] == [IGNORE, 2, 3, IGNORE, 5]
    batch = LMCollator(pad_id=0)(packed)
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 3, 0]  # padding is a segment of its own
    assert batch["labels"][1].tolist() == [IGNORE, 7, 8, 9, IGNORE]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 0]


def _inputs(batch: dict) -> dict:
    """The model inputs of a collated batch, without the loss's labels and positions: (B, T, V) logits."""
    return {k: v for k, v in batch.items() if k not in ("labels", "predict_mask")}


def test_packed_examples_do_not_attend_to_each_other(spec, tok) -> None:
    examples = [
        Example("Question: capital?", " Paris"),
        Example("the lazy dog", " yes"),
        Example("fox", " no"),
    ]
    model = build_causal_lm(spec, seed=0).eval()
    single = LMDataset(examples, tok, CFG, 64)
    packed = LMDataset(examples, tok, CFG, 64, packing=True)
    assert len(packed) == 1 and packed.lengths[0] == sum(single.lengths)
    collate = LMCollator(tok.pad_token_id)
    with torch.no_grad():
        row = lm_forward(model, _inputs(collate([packed[0]])))  # (1, T, V)
        start = 0
        for i in range(len(examples)):
            alone = lm_forward(model, _inputs(collate([single[i]])))
            n = single.lengths[i]
            torch.testing.assert_close(row[0, start : start + n], alone[0], atol=1e-5, rtol=1e-4)
            start += n
        # the same row with one causal mask over all of it: later examples would see earlier ones
        joint = model(input_ids=collate([packed[0]])["input_ids"])
        assert not torch.allclose(joint[0, single.lengths[0] :], row[0, single.lengths[0] :], atol=1e-5)


@pytest.mark.parametrize("packing", [False, True])
def test_projecting_only_scored_positions_gives_the_same_loss_nll_and_gradients(spec, tok, packing) -> None:
    from transferkit.training.losses import compute_loss

    examples = [
        Example("Question: capital?", " Paris"),
        Example("the lazy dog jumps over", " yes it does"),
        Example("fox", " no"),
    ]
    batch = LMCollator(tok.pad_token_id)(list(LMDataset(examples, tok, CFG, 64, packing=packing)))
    mask = batch["predict_mask"]
    assert mask.sum() == (batch["labels"][:, 1:] != IGNORE).sum()
    results = []
    for selective in (False, True):
        model = build_causal_lm(spec, seed=0)
        rows: list[int] = []
        model.head.output_layer.register_forward_hook(
            lambda m, args, out, rows=rows: rows.append(args[0].shape[0])
        )
        inputs = _inputs(batch) if not selective else {k: v for k, v in batch.items() if k != "labels"}
        logits = lm_forward(model, inputs)
        loss = compute_loss(logits, batch["labels"], "causal_lm")
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        with torch.no_grad():
            stats = lm_forward(model.eval(), dict(batch))  # evaluation: (B, 2) from the scored positions
        results.append((loss.detach(), grads, stats, logits.shape, rows[0]))
    (loss_a, grads_a, stats_a, shape_a, _), (loss_b, grads_b, stats_b, shape_b, rows_b) = results
    assert len(shape_a) == 3 and shape_b == (int(mask.sum()), shape_a[-1])
    assert rows_b == int(mask.sum())  # the vocabulary projection ran on the scored positions only
    torch.testing.assert_close(loss_a, loss_b, atol=1e-5, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-4, msg=name)
    full = nll_per_example(lm_forward(build_causal_lm(spec, seed=0).eval(), _inputs(batch)), batch["labels"])
    torch.testing.assert_close(stats_b, full, atol=1e-4, rtol=1e-5)


def test_perplexity_and_nll_match_cross_entropy() -> None:
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE], [IGNORE, 1, 2, 3, 4]])
    stats = nll_per_example(logits, labels)
    assert stats[:, 1].tolist() == [2.0, 4.0]
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    assert perplexity(stats)["perplexity"] == pytest.approx(float(torch.exp(ce)), rel=1e-5)


def test_exact_match_and_rouge_l() -> None:
    assert exact_match([" Paris ", "Rome"], ["Paris", "Berlin"]) == 0.5
    assert rouge_l(["the cat sat"], ["the cat sat"]) == pytest.approx(1.0)
    # LCS "the cat" of 3 and 2 tokens: P = 2/3, R = 1, F = 0.8
    assert rouge_l(["the cat sat"], ["the cat"]) == pytest.approx(0.8)
