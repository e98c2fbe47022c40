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
import yaml
from transformers import AutoTokenizer

from transferkit.artifacts import read_run
from transferkit.data.conll import convert, entity_types, is_table, read_sentences
from transferkit.data.readers import read_table
from transferkit.errors import DataError
from transferkit.evaluation.ner import entity_metrics
from transferkit.inference import forward_in_order
from transferkit.manifest import TokenFields
from transferkit.predictors import BasePredictor, add_columns, refuse_existing, write_new_text
from transferkit.tasks.token_classification.data import TokenCollator, TokenWindows, word_logits
from transferkit.tasks.token_classification.model import load_token_model

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

    return (yaml.safe_load(cfg_file.read_text()) or {}).get("tokens", {})


class TokenPredictor(BasePredictor):
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
        logits = forward_in_order(
            self.window_logits, windows, self.collator, self.batch_size, precision=self.precision
        )
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

    def _read(self, path, tokens_column, tags_column, tag_column, file_format):
        s = self.settings
        return read_sentences(
            path,
            file_format or s.get("file_format", "auto"),
            tag_column if tag_column is not None else s.get("tag_column", -1),
            tokens_column or s.get("tokens_column", "tokens"),
            tags_column or s.get("tags_column", "tags"),
        )

    def evaluate(
        self,
        path: str | Path,
        input_column: str | None = None,
        label_column: str | None = None,
        scheme: str | None = None,
        tag_column: int | None = None,
        file_format: str | None = None,
    ) -> dict:
        """Entity metrics on a tagged CoNLL or JSONL file (same keys as ``metrics.json``'s splits).

        Every setting defaults to the run's own (``tokens.*`` of its config).

        Args:
            path: The CoNLL or JSONL/Parquet file.
            input_column: The tokens column of a table.
            label_column: The tags column of a table.
            scheme: The file's tagging scheme (converted to the model's).
            tag_column: The tag column of a CoNLL file (an index).
            file_format: ``conll``, ``jsonl`` or ``auto``.

        Raises:
            DataError: for a bad file, a malformed tag sequence, or entity types this model never saw.
        """
        frame = self._read(path, input_column, label_column, tag_column, file_format)
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

    def predict_rows(self, path: str | Path, input_column: str | None = None) -> list[dict]:
        """Predicts a table (CSV/TSV/JSONL/Parquet) or a CoNLL file (tags, if any, are ignored).

        A table's ``input_column`` holds raw texts or token lists (either, per row); by default the run's
        tokens column if the table has it, else ``text``.

        Returns:
            Each input row (JSON-ready) with ``entities`` added, and ``predicted_tags`` for token input.

        Raises:
            DataError: for a bad file or column, or a table that already has an ``entities`` or
                ``predicted_tags`` column (it would be replaced).
        """

        if is_table(path) or Path(path).suffix.lower() in (".csv", ".tsv", ".tab"):
            frame = read_table(path)
            rows = frame.to_dict("records")
            column = input_column
            if column is None:
                tokens_column = self.settings.get("tokens_column", "tokens")
                column = tokens_column if tokens_column in frame.columns else "text"
            if column not in frame.columns:
                wanted = repr(column) if input_column else f"'text' or {tokens_column!r}"
                raise DataError(
                    f"{path}: no column {wanted} (columns: {', '.join(map(str, frame.columns))}); set --text-column"
                )
            add_columns(frame, {"entities": None, "predicted_tags": None}, path)  # never replaced
            # a str cell is a raw text; a list (JSONL) or array (Parquet) cell is a token list
            inputs = [
                str(v) if isinstance(v, str) or not hasattr(v, "__iter__") else [str(t) for t in v]
                for v in (r[column] for r in rows)
            ]
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

    def predict_file(self, path: str | Path, output: str | Path, input_column: str | None = None) -> Path:
        """:meth:`predict_rows` written as JSONL to ``output`` (a new file; never overwritten, even by a file
        that appears while the predictions run)."""
        output = refuse_existing(output)
        rows = self.predict_rows(path, input_column)
        return write_new_text(
            "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), output
        )


__all__ = ["TokenPredictor", "decode_spans", "split_words"]
