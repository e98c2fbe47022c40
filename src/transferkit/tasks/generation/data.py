"""Generation data: prompt/completion pairs (or chats) -> token ids with the loss on completion tokens only.

An example is a ``prompt`` and a ``completion`` (JSONL fields, names in ``generation.*_column``), or a chat
``messages`` list rendered with the tokenizer's chat template, whose last turn (the assistant's) is the
completion. Prompt and completion are tokenised separately, so the prompt's ids are exactly what the model
sees when asked to generate; labels are ``-100`` on prompt tokens (ignored by the loss).

Packing (``generation.packing``) concatenates short examples into rows of up to ``backbone.max_length``
tokens. Position ids restart at 0 for every example; transformers reads restarting positions (with no
attention mask) as separate sequences and builds a block-diagonal causal mask, so no example attends to
another. The first token of every example has label -100 (nothing before it in its own example predicts it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from transferkit.config import GenerationTaskConfig, RunConfig
from transferkit.errors import DataError

log = logging.getLogger("transferkit.data")
IGNORE = -100  # label of tokens the loss skips (prompt tokens, padding)


@dataclass
class Example:
    """One training or evaluation example.

    Attributes:
        prompt: The input text (or None when ``messages`` is given).
        completion: The reference completion: what the model should write.
        messages: A chat whose last turn is the assistant's completion, or None.
    """

    prompt: str | None
    completion: str
    messages: list[dict] | None = None


def _check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise DataError(f"{where}: messages[{i}] must be an object with string 'role' and 'content'")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's (it is the completion to learn)")
    return messages


def example_from_record(record: dict, cfg: GenerationTaskConfig, where: str) -> Example:
    """Builds an :class:`Example` from one JSON object; ``where`` names the file and line for errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if cfg.messages_column in record and record[cfg.messages_column] is not None:
        messages = _check_messages(record[cfg.messages_column], where)
        return Example(None, messages[-1]["content"], messages)
    missing = [c for c in (cfg.prompt_column, cfg.completion_column) if not isinstance(record.get(c), str)]
    if missing:
        fields = ", ".join(map(str, record)) or "none"
        raise DataError(
            f"{where}: no text field {missing[0]!r} (fields: {fields}); give {cfg.prompt_column!r} and "
            f"{cfg.completion_column!r} strings or a {cfg.messages_column!r} list (or set generation.*_column)"
        )
    return Example(record[cfg.prompt_column], record[cfg.completion_column])


def read_examples(path: str | Path, cfg: GenerationTaskConfig) -> list[Example]:
    """Reads a JSONL file of prompt/completion pairs or chats.

    Raises:
        DataError: naming the file and 1-based line of the first bad record.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {n}: not valid JSON ({err.msg}); one object per line") from None
            out.append(example_from_record(record, cfg, f"{path} line {n}"))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def render(example: Example, tokenizer, cfg: GenerationTaskConfig) -> tuple[str, str, bool]:
    """``(prompt text, completion text, templated)`` as the model sees them.

    Chats (and pairs, with ``generation.chat_template``) go through the tokenizer's chat template: the
    prompt is every turn but the last plus the assistant header; the completion is the rest of the rendering.
    """
    messages = example.messages
    if messages is None and cfg.chat_template:
        messages = [
            {"role": "user", "content": example.prompt},
            {"role": "assistant", "content": example.completion},
        ]
    if messages is None:
        return example.prompt, example.completion, False
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("chat examples need a tokenizer with a chat template; this backbone's has none")
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise DataError("the chat template renders the conversation so that the prompt is not its prefix")
    return prompt, full[len(prompt) :], True


def prompt_ids(prompt: str, tokenizer, templated: bool) -> list[int]:
    """Token ids of a prompt (the template already holds its special tokens; plain prompts get BOS if the
    tokenizer adds one)."""
    return tokenizer(prompt, add_special_tokens=not templated)["input_ids"]


def encode(
    example: Example, tokenizer, cfg: GenerationTaskConfig, max_length: int
) -> tuple[list[int], list[int], bool]:
    """``(input_ids, labels, truncated)`` of one example; labels are -100 on the prompt.

    Too long: the prompt loses tokens from its left (the completion is what is learned), then the completion
    from its right.
    """
    prompt, completion, templated = render(example, tokenizer, cfg)
    p_ids = prompt_ids(prompt, tokenizer, templated)
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if cfg.add_eos and eos is not None and eos not in c_ids:
        c_ids = c_ids + [eos]
    truncated = len(p_ids) + len(c_ids) > max_length
    if truncated:
        keep_prompt = max(1, max_length - len(c_ids))
        p_ids = p_ids[-keep_prompt:]
        c_ids = c_ids[: max_length - len(p_ids)]
    ids = p_ids + c_ids
    labels = [IGNORE] * len(p_ids) + c_ids
    labels[0] = IGNORE  # nothing in the example predicts its first token
    return ids, labels, truncated


def pack(rows: list[tuple[list[int], list[int]]], max_length: int) -> list[dict]:
    """Concatenates examples (in order) into rows of at most ``max_length`` tokens.

    Returns:
        Items with ``input_ids``, ``lm_labels`` and ``position_ids`` (restarting at 0 per example).
    """
    packed: list[dict] = []
    cur: dict = {"input_ids": [], "lm_labels": [], "position_ids": []}
    for ids, labels in rows:
        if cur["input_ids"] and len(cur["input_ids"]) + len(ids) > max_length:
            packed.append(cur)
            cur = {"input_ids": [], "lm_labels": [], "position_ids": []}
        cur["input_ids"] += ids
        cur["lm_labels"] += labels
        cur["position_ids"] += list(range(len(ids)))
    if cur["input_ids"]:
        packed.append(cur)
    return packed


class LMDataset(Dataset):
    """Tokenised examples (or packed rows) for training and perplexity.

    Args:
        examples: The examples.
        tokenizer: The backbone's tokenizer.
        cfg: Generation settings (rendering, EOS, packing).
        max_length: Longest row in tokens.
        packing: Pack short examples together (training only; evaluation scores examples one by one).
    """

    def __init__(
        self,
        examples: list[Example],
        tokenizer,
        cfg: GenerationTaskConfig,
        max_length: int,
        packing: bool = False,
    ):
        encoded = [encode(e, tokenizer, cfg, max_length) for e in examples]
        truncated = sum(t for _, _, t in encoded)
        if truncated:
            log.warning(
                "%d of %d examples were longer than %d tokens and were truncated (raise backbone.max_length)",
                truncated,
                len(encoded),
                max_length,
            )
        pairs = [(ids, labels) for ids, labels, _ in encoded]
        if packing:
            self.items = pack(pairs, max_length)
        else:
            self.items = [{"input_ids": ids, "lm_labels": labels} for ids, labels in pairs]
        self.lengths = [len(it["input_ids"]) for it in self.items]
        self.num_examples = len(examples)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def predict_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: positions whose next token is labelled (position t predicts token t + 1)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE
    return mask


class LMCollator:
    """Right-pads a batch: ``input_ids`` (pad id), ``labels`` (-100), ``attention_mask`` and ``predict_mask``
    (:func:`predict_mask`); packed rows also get ``position_ids``, whose padding restarts at 0 (a separate
    segment nothing real attends to)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        out: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": []}
        packed = "position_ids" in items[0]
        if packed:
            out["position_ids"] = []
        for it in items:
            n = len(it["input_ids"])
            pad = width - n
            out["input_ids"].append(it["input_ids"] + [self.pad_id] * pad)
            out["labels"].append(it["lm_labels"] + [IGNORE] * pad)
            out["attention_mask"].append([1] * n + [0] * pad)
            if packed:
                out["position_ids"].append(it["position_ids"] + list(range(pad)))
        batch = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}  # each (B, T)
        batch["predict_mask"] = predict_mask(batch["labels"])  # the model projects only these positions
        return batch


def eval_prompts(examples, tokenizer, cfg: RunConfig) -> tuple[list[list[int]], list[str]]:
    """Prompt ids and reference completions of the first ``generation.eval_samples`` examples."""
    prompts, refs = [], []
    for e in examples[: cfg.generation.eval_samples]:
        prompt, _, templated = render(e, tokenizer, cfg.generation)
        prompts.append(prompt_ids(prompt, tokenizer, templated)[-cfg.backbone.max_length :])
        refs.append(e.completion)
    return prompts, refs
