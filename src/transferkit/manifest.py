"""The run manifest: what a run folder's model predicts and how its inputs are prepared.

Every task's fit writes one :class:`RunManifest` with :func:`write_manifest`; everything that loads a run
(predictors, serving, export, compress) reads it back with :func:`read_manifest`. The file keeps its old
name, ``RUN/labels.json``: exported ONNX folders copy it, served and archived runs carry it, and readers
outside this package look for it, so a new name would break folders that already exist.

Versions:
    1  (no ``manifest_version`` key) what transferkit wrote before the manifest was typed: per-task keys at
       the top level (``pooling``; ``scheme`` and ``stride``) next to ``labels`` / ``task`` / ``problem``.
    2  the per-task fields in one block each: ``text``, ``tokens``, ``preprocess`` (images), ``generation``.

A version-1 file is migrated when read, so every folder written before still loads.

Example::

    {"manifest_version": 2, "task": "token-classification", "problem": "single_label",
     "labels": ["O", "B-PER", "I-PER"], "max_length": 128, "tokens": {"scheme": "iob2", "stride": 32}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from transferkit.errors import RunError
from transferkit.utils.io import atomic_write_json

MANIFEST_FILE = "labels.json"
MANIFEST_VERSION = 2


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextFields(_Block):
    """Text classification: how the encoder's token states become one vector."""

    pooling: str | None = Field(None, description="Pooling of the backbone's token states (cls, mean, ...).")


class TokenFields(_Block):
    """Token classification: the tag scheme and how long sentences are cut into windows."""

    scheme: str = Field("iob2", description="Tag scheme of the label names (iob1, iob2, bioes).")
    stride: int = Field(32, ge=0, description="Tokens shared by consecutive windows of a long sentence.")


class ImagePreprocess(_Block):
    """Image classification: the Hugging Face processor saved in ``model/``, or a plain resize."""

    kind: Literal["hf", "resize"] = Field(
        description="hf: the processor saved beside the model; resize: below."
    )
    size: list[int] | None = Field(None, description="(height, width) of the resize.")
    mean: list[float] | None = Field(None, description="Per-channel mean subtracted after scaling to [0, 1].")
    std: list[float] | None = Field(None, description="Per-channel standard deviation divided by.")

    @model_validator(mode="after")
    def _resize_is_complete(self) -> ImagePreprocess:
        if self.kind == "resize" and None in (self.size, self.mean, self.std):
            raise ValueError("a resize preprocess needs size, mean and std")
        return self


class GenerationFields(_Block):
    """Generation: how prompts are rendered and how long completions may be."""

    chat_template: bool = Field(False, description="Render prompts as a user turn of the chat template.")
    add_eos: bool = Field(True, description="Completions were trained to end with the end-of-sequence token.")
    max_new_tokens: int = Field(32, gt=0, description="Default longest completion.")


class RunManifest(BaseModel):
    """The content of ``RUN/labels.json``.

    Unknown top-level keys (a task registered outside transferkit may add its own) are kept and written
    back; unknown keys inside a typed block are refused.
    """

    model_config = ConfigDict(extra="allow")

    manifest_version: int = Field(MANIFEST_VERSION, description="Layout version of this file.")
    task: str = Field("text-classification", description="Registered task name; what load() dispatches on.")
    problem: str = Field("single_label", description="single_label, multi_label or regression.")
    labels: list[str] = Field(default_factory=list, description="Label names in head order; [] if none.")
    max_length: int | None = Field(None, gt=0, description="Longest tokenized input, in tokens.")
    text: TextFields | None = None
    tokens: TokenFields | None = None
    preprocess: ImagePreprocess | None = None
    generation: GenerationFields | None = None
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Precision the run trained and evaluated at; what load() predicts at by default."
    )

    @model_validator(mode="after")
    def _known_version(self) -> RunManifest:
        if not 1 <= self.manifest_version <= MANIFEST_VERSION:
            raise ValueError(
                f"manifest_version {self.manifest_version} is not one this transferkit reads "
                f"(1..{MANIFEST_VERSION}); upgrade transferkit"
            )
        return self


def _migrate(data: Any) -> Any:
    """A file without ``manifest_version`` is version 1: moves its top-level per-task keys into their blocks."""
    if not isinstance(data, dict) or "manifest_version" in data:
        return data
    data = dict(data)
    if "pooling" in data:
        data["text"] = {"pooling": data.pop("pooling")}
    if "scheme" in data or "stride" in data:
        data["tokens"] = {k: data.pop(k) for k in ("scheme", "stride") if k in data}
    data["manifest_version"] = 1
    return data


def manifest_path(run_dir: str | Path) -> Path:
    """Where the manifest of ``run_dir`` lives."""
    return Path(run_dir) / MANIFEST_FILE


def write_manifest(run_dir: str | Path, manifest: RunManifest) -> Path:
    """Writes ``manifest`` (as the current version) to ``run_dir/labels.json`` atomically.

    Returns:
        The file written.
    """
    data = manifest.model_dump(mode="json", exclude_none=True)
    data["manifest_version"] = MANIFEST_VERSION  # a migrated version-1 manifest is written in today's layout
    return atomic_write_json(manifest_path(run_dir), data)


def read_run_json(path: str | Path) -> Any:
    """The content of a JSON file of a run or exported folder (``metrics.json``, ``export.json``, ...).

    Raises:
        RunError: naming the file when it is missing, unreadable, not UTF-8 or not valid JSON (a damaged
            folder: restore it, or write it again).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            f"{path}: missing; restore the folder or write it again (transferkit fit / export)"
        ) from None
    except json.JSONDecodeError as e:
        raise RunError(
            f"{path}: not valid JSON (line {e.lineno}: {e.msg}); the folder is damaged: restore it or write it again"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: unreadable ({e}); restore the folder or write it again") from None


def read_manifest(run_dir: str | Path) -> RunManifest:
    """Reads and checks ``run_dir/labels.json`` (any version this package wrote).

    Raises:
        RunError: if the file is missing, not JSON, or fails the schema (the message names each field).

    Example:
        >>> read_manifest("runs/rotten_tomatoes-full-20261123-101500").labels  # doctest: +SKIP
        ['neg', 'pos']
    """
    path = manifest_path(run_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing; is this a run folder written by transferkit?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: unreadable ({e}); is this a run folder written by transferkit?") from None
    try:
        return RunManifest.model_validate(_migrate(data))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors()
        )
        raise RunError(f"{path}: not a valid run manifest: {problems}") from None
