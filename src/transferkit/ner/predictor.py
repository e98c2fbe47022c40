"""Loading a token-classification run and predicting entity spans with it.

Inputs are raw texts (``str``) or pre-tokenized sentences (``list[str]``). Raw text is split into words and
punctuation marks (:data:`WORD`) whose character offsets are kept; a pre-tokenized sentence is read as its
tokens joined by single spaces, and offsets refer to that string. Each entity span is
``{"text", "type", "start", "end", "score"}`` (``end`` exclusive; ``score`` the mean probability of the
predicted tags over the entity's words).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from transferkit.artifacts import read_run
from transferkit.data.conll import convert, entity_types, read_sentences
from transferkit.data.tokens import TokenCollator, TokenWindows, word_logits
from transferkit.errors import DataError
from transferkit.evaluation.ner import entity_metrics
from transferkit.inference import forward_in_order
from transferkit.manifest import TokenFields
from transferkit.ner.modeling import load_token_model

# dotted initials keep their final dot, as CoNLL writes them ("U.S.", "e.g."); other words keep inner
# hyphens, apostrophes and dots ("don't", "Jean-Luc", "3.5"); every other non-space character is a word
WORD = re.compile(r"(?:[^\W\d_]\.){2,}(?![^\W_])|\w+(?:[-'’.]\w+)*|[^\w\s]")


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a raw text and their ``(start, end)`` character offsets."""
    matches = list(WORD.finditer(text))
    return [m.group() for m in matches], [m.span() for m in matches]


def joined_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Offsets of the tokens in ``" ".join(tokens)``."""
    out, pos = [], 0
    for t in tokens:
        out.append((pos, pos + len(t)))
        pos += len(t) + 1
    return out


def decode_spans(tags: list[str], scheme: str) -> list[tuple[int, int, str]]:
    """Entity spans of predicted tags, leniently: a tag that cannot continue the open entity starts a new one."""
    spans, start, kind = [], None, None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, t = tag.partition("-")
        continues = kind is not None and t == kind and prefix in ("I", "E")
        if kind is not None and not continues:
            spans.append((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I", "S", "E") and not continues:
            start, kind = i, t
        if scheme == "bioes" and prefix in ("S", "E") and kind is not None:
            spans.append((start, i + 1, kind))
            start, kind = None, None
    return spans


def token_settings(folder: Path) -> dict:
    """The ``tokens:`` section of a run's (or exported folder's) ``config.yaml``; empty without one."""
    cfg_file = folder / "config.yaml"
    if not cfg_file.is_file():
        return {}
    import yaml

    return (yaml.safe_load(cfg_file.read_text()) or {}).get("tokens", {})


class TokenPredictor:
    """A loaded token-classification run: ``predict`` texts or token lists into entity spans.

    Args:
        run_dir: A folder written by ``transferkit fit --task token-classification``.
        batch_size: Windows per forward pass.
    """

    task = "token-classification"

    def __init__(self, run_dir: str | Path, batch_size: int = 64):
        self.run_dir, manifest, self.metrics = read_run(run_dir)
        tokens = manifest.tokens or TokenFields()
        self.labels: list[str] = manifest.labels
        self.scheme: str = tokens.scheme
        self.max_length: int = manifest.max_length or 256
        self.stride: int = tokens.stride
        self.batch_size = batch_size
        self.model = load_token_model(self.run_dir / "model")
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.run_dir / "model")
        self.collator = TokenCollator(self.tokenizer)
        self.settings = token_settings(self.run_dir)

    def word_probabilities(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per sentence, ``(num_words, C)`` tag probabilities (long sentences through overlapping windows)."""
        sentences = [list(s) for s in sentences]
        if not sentences:
            return []
        windows = TokenWindows(self.tokenizer, sentences, None, self.max_length, self.stride)
        logits = forward_in_order(self.window_logits, windows, self.collator, self.batch_size)
        return [torch.softmax(w, dim=-1).numpy() for w in word_logits(windows, logits)]

    def window_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, C) logits of a collated batch of windows (the one step an ONNX export replaces)."""
        return self.model(**batch).logits

    def tag(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """Per sentence, one predicted tag per word."""
        return [[self.labels[i] for i in p.argmax(-1)] for p in self.word_probabilities(sentences)]

    def predict(self, inputs: str | Sequence[str] | Sequence[Sequence[str]]) -> list[list[dict]]:
        """Entity spans per input.

        Args:
            inputs: One raw text, a list of raw texts, or a list of pre-tokenized sentences (lists of
                tokens; wrap a single sentence: ``[tokens]``).

        Returns:
            One list of ``{"text", "type", "start", "end", "score"}`` per input, in input order.

        Example:
            >>> model.predict("Angela Merkel visited Paris.")  # doctest: +SKIP
            [[{'text': 'Angela Merkel', 'type': 'PER', 'start': 0, 'end': 13, 'score': 0.99},
              {'text': 'Paris', 'type': 'LOC', 'start': 22, 'end': 27, 'score': 0.98}]]
        """
        if isinstance(inputs, str):
            inputs = [inputs]
        texts, words, offsets = [], [], []
        for item in inputs:
            if isinstance(item, str):
                w, o = split_words(item)
                texts.append(item)
            else:
                w = [str(t) for t in item]
                o = joined_offsets(w)
                texts.append(" ".join(w))
            words.append(w)
            offsets.append(o)
        todo = [i for i, w in enumerate(words) if w]
        probs = dict(zip(todo, self.word_probabilities([words[i] for i in todo]), strict=True))
        out = []
        for i, text in enumerate(texts):
            if i not in probs:
                out.append([])
                continue
            best = probs[i].argmax(-1)
            tags = [self.labels[j] for j in best]
            top = probs[i].max(-1)
            spans = []
            for start, end, kind in decode_spans(tags, self.scheme):
                a, b = offsets[i][start][0], offsets[i][end - 1][1]
                score = float(np.mean(top[start:end]))
                spans.append({"text": text[a:b], "type": kind, "start": a, "end": b, "score": score})
            out.append(spans)
        return out

    def _read(self, path, tokens_column, tags_column, scheme, tag_column, file_format, with_tags=True):
        s = self.settings
        return read_sentences(
            path,
            file_format or s.get("file_format", "auto"),
            tag_column if tag_column is not None else s.get("tag_column", -1),
            tokens_column or s.get("tokens_column", "tokens"),
            (tags_column or s.get("tags_column", "tags")) if with_tags else None,
        )

    def evaluate(
        self,
        path: str | Path,
        tokens_column: str | None = None,
        tags_column: str | None = None,
        scheme: str | None = None,
        tag_column: int | None = None,
        file_format: str | None = None,
    ) -> dict:
        """Entity metrics on a tagged CoNLL or JSONL file (same keys as ``metrics.json``'s splits).

        Column, scheme and format settings default to the run's own (``tokens.*`` of its config).

        Raises:
            DataError: for a bad file, a malformed tag sequence, or entity types this model never saw.
        """
        frame = self._read(path, tokens_column, tags_column, scheme, tag_column, file_format)
        source = scheme or self.settings.get("scheme", self.scheme)
        gold = [
            convert(list(t), source, self.scheme, w)
            for t, w in zip(frame["tags"], frame["_where"], strict=True)
        ]
        known = {lab.split("-", 1)[1] for lab in self.labels if lab != "O"}
        unseen = entity_types(gold) - known
        if unseen:
            raise DataError(
                f"{path}: entity types {', '.join(sorted(unseen))} were never seen by this model (it knows {', '.join(sorted(known))})"
            )
        return entity_metrics(gold, self.tag(frame["tokens"].tolist()), self.scheme)

    def predict_rows(
        self, path: str | Path, text_column: str = "text", tokens_column: str | None = None
    ) -> list[dict]:
        """Predicts a file of raw texts (CSV/TSV/JSONL/Parquet with ``text_column``), of token lists (JSONL /
        Parquet with ``tokens_column``) or a CoNLL file (tags, if any, are ignored).

        Returns:
            Each input row (JSON-ready) with ``entities`` added, and ``predicted_tags`` for token input.
        """
        from transferkit.data.conll import is_table
        from transferkit.data.readers import read_table

        tokens_column = tokens_column or self.settings.get("tokens_column", "tokens")
        if is_table(path) or Path(path).suffix.lower() in (".csv", ".tsv", ".tab"):
            frame = read_table(path)
            rows = frame.to_dict("records")
            if tokens_column in frame.columns:
                inputs = [[str(t) for t in r[tokens_column]] for r in rows]
            elif text_column in frame.columns:
                inputs = [str(r[text_column]) for r in rows]
            else:
                raise DataError(
                    f"{path}: no column {text_column!r} or {tokens_column!r} (columns: {', '.join(map(str, frame.columns))}); set --text-column"
                )
        else:
            frame = read_sentences(path, "conll", None)
            rows = [{"tokens": t} for t in frame["tokens"]]
            inputs = [list(t) for t in frame["tokens"]]
        spans = self.predict(inputs)
        token_inputs = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
        tags = dict(zip(token_inputs, self.tag([inputs[i] for i in token_inputs]), strict=True))
        out = []
        for i, (row, found) in enumerate(zip(rows, spans, strict=True)):
            record = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
            record["entities"] = found
            if i in tags:
                record["predicted_tags"] = tags[i]
            out.append(record)
        return out

    def predict_file(
        self,
        path: str | Path,
        output: str | Path,
        text_column: str = "text",
        tokens_column: str | None = None,
    ) -> Path:
        """:meth:`predict_rows` written as JSONL to ``output`` (a new file; never overwritten)."""
        from transferkit.utils.io import atomic_write_text

        output = Path(output)
        if output.exists():
            raise DataError(
                f"{output}: already exists; choose another --output (files are never overwritten)"
            )
        rows = self.predict_rows(path, text_column, tokens_column)
        atomic_write_text(
            output, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
        )
        return output


__all__ = ["TokenPredictor", "decode_spans", "split_words"]
