"""Per-task adapters: the only task-specific code of the service.

An adapter turns the ``inputs`` of a request into what the task's predictor takes (``decode``), turns the
predictor's outputs into JSON predictions (``encode``), publishes both shapes as JSON schemas (for
``/openapi.json``) and gives a warm-up input. A new task plugs in with one class and one line in
:data:`ADAPTERS`; the predictor contract is the one in :mod:`transferkit.tasks`.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from typing import Any

from transferkit.errors import RegistryError
from transferkit.serving.settings import ServeSettings

log = logging.getLogger("transferkit.serving")


class InputError(ValueError):
    """A request input the service refuses; the message is sent to the client as-is (HTTP 422)."""


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


SCORES = {"type": "object", "additionalProperties": {"type": "number"}}
CLASSIFICATION = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"label": {"type": "string"}, "score": {"type": "number"}, "scores": SCORES},
            "required": ["label", "score", "scores"],
        },
        {
            "type": "object",
            "properties": {"labels": {"type": "array", "items": {"type": "string"}}, "scores": SCORES},
            "required": ["labels", "scores"],
        },
        {"type": "object", "properties": {"value": {"type": "number"}}, "required": ["value"]},
    ]
}


class TaskAdapter:
    """Base adapter: inputs are texts (one string, or a list of strings)."""

    task = ""
    #: what one input is, for error messages and the schema description
    input_kind = "a string"
    #: decode in a worker thread (image decoding is CPU work that would stall the event loop; texts are not)
    decode_in_thread = False

    def item_schema(self, settings: ServeSettings) -> dict:
        """JSON schema of one input."""
        return {"type": "string", "maxLength": settings.max_text_chars}

    def prediction_schema(self) -> dict:
        """JSON schema of one prediction."""
        raise NotImplementedError

    def request_schema(self, settings: ServeSettings) -> dict:
        """JSON schema of the ``application/json`` body of ``POST /v1/predict``."""
        item = self.item_schema(settings)
        many = {"type": "array", "items": item, "minItems": 1, "maxItems": settings.max_inputs}
        single = item if item.get("type") == "string" else None
        return {
            "type": "object",
            "properties": {
                "inputs": {"anyOf": [single, many]} if single else many,
            },
            "required": ["inputs"],
            "additionalProperties": False,
            "description": f"one input or a list of 1 to {settings.max_inputs}; each input is {self.input_kind}",
        }

    def split_inputs(self, inputs: Any, settings: ServeSettings) -> list:
        """``inputs`` as a non-empty list within the per-request limit."""
        if isinstance(inputs, str):
            return [inputs]
        if not isinstance(inputs, list):
            raise InputError(
                f"inputs: expected {self.input_kind} or a list of them, got {_type_name(inputs)}"
            )
        if not inputs:
            raise InputError("inputs: the list is empty; send at least one input")
        if len(inputs) > settings.max_inputs:
            raise InputError(
                f"inputs: {len(inputs)} inputs in one request, more than the limit of {settings.max_inputs} "
                "(--max-inputs); split the request"
            )
        return inputs

    def decode_item(self, i: int, item: Any, settings: ServeSettings) -> Any:
        """One JSON input -> one predictor input (raises :class:`InputError`)."""
        return _check_text(i, item, settings)

    def decode(self, inputs: Any, settings: ServeSettings) -> list:
        """The JSON ``inputs`` of a request -> the predictor's inputs, in order."""
        return [self.decode_item(i, x, settings) for i, x in enumerate(self.split_inputs(inputs, settings))]

    def decode_form(self, texts: list[str], files: list[bytes], settings: ServeSettings) -> list:
        """A ``multipart/form-data`` request: ``inputs`` text fields (and, for images, file parts)."""
        if files:
            raise InputError(f"file uploads are for image models; this {self.task} model takes text fields")
        if not texts:
            raise InputError("multipart body has no 'inputs' field; send one 'inputs' field per text")
        return self.decode(texts, settings)

    def encode(self, outputs: list) -> list[dict]:
        """The predictor's outputs -> JSON predictions (already JSON-ready for most tasks)."""
        return [dict(o) for o in outputs]

    def warmup_inputs(self) -> list:
        """Inputs run once after loading, so the first request does not pay for lazy initialisation."""
        return ["transferkit warm-up"]

    def configure(self, predictor: Any) -> None:
        """Called once with the loaded predictor (image adapters read its input size)."""

    def cost(self, inputs: list) -> int:
        """What ``inputs`` weigh in the queue's byte budget (0: texts are bounded by their count)."""
        return 0


def _check_text(i: int, item: Any, settings: ServeSettings) -> str:
    if not isinstance(item, str):
        raise InputError(f"inputs[{i}]: expected a string, got {_type_name(item)}")
    if len(item) > settings.max_text_chars:
        raise InputError(
            f"inputs[{i}]: text has {len(item):,} characters, more than the limit of "
            f"{settings.max_text_chars:,} (--max-text-chars)"
        )
    if not item.isascii():
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON) that a tokenizer would fail on
            raise InputError(
                f"inputs[{i}]: text holds an invalid Unicode character (a lone surrogate); send valid UTF-8"
            ) from None
    return item


class TextClassificationAdapter(TaskAdapter):
    task = "text-classification"

    def prediction_schema(self) -> dict:
        return CLASSIFICATION


class TokenClassificationAdapter(TaskAdapter):
    """NER: inputs are texts or pre-split token lists (joined with single spaces, so offsets refer to that
    joined text); each prediction is ``{"entities": [{"text", "type", "start", "end", "score"}]}``."""

    task = "token-classification"
    input_kind = "a string or a list of tokens"

    def item_schema(self, settings: ServeSettings) -> dict:
        text = {"type": "string", "maxLength": settings.max_text_chars}
        return {"anyOf": [text, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}

    def request_schema(self, settings: ServeSettings) -> dict:
        schema = super().request_schema(settings)
        text = {"type": "string", "maxLength": settings.max_text_chars}
        schema["properties"]["inputs"] = {"anyOf": [text, schema["properties"]["inputs"]]}
        return schema

    def decode_item(self, i: int, item: Any, settings: ServeSettings) -> str:
        if isinstance(item, list):
            if not item or not all(isinstance(t, str) for t in item):
                raise InputError(f"inputs[{i}]: a token list must be a non-empty list of strings")
            item = " ".join(item)
        return _check_text(i, item, settings)

    def prediction_schema(self) -> dict:
        span = {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "type": {"type": "string"},
                "start": {"type": "integer"},
                "end": {"type": "integer"},
                "score": {"type": "number"},
            },
            "required": ["text", "type", "start", "end"],
        }
        return {
            "type": "object",
            "properties": {"entities": {"type": "array", "items": span}},
            "required": ["entities"],
        }

    def encode(self, outputs: list) -> list[dict]:
        # the predictor gives one span list per input (or a dict that already holds "entities")
        return [dict(o) if isinstance(o, dict) else {"entities": list(o)} for o in outputs]


DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
#: the only image formats decoded (Pillow would otherwise try every plugin, EPS through Ghostscript)
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


class ImageClassificationAdapter(TaskAdapter):
    """Inputs are base64-encoded image files (data URLs too) or multipart file uploads; predictions are the
    same label / score / scores dicts as text classification."""

    task = "image-classification"
    input_kind = "a base64-encoded image file (PNG, JPEG, WEBP, GIF, BMP or TIFF)"
    decode_in_thread = True
    #: shorter side images are reduced to at decode time (None: the model's size is unknown, keep them)
    target_side: int | None = None

    def configure(self, predictor: Any) -> None:
        self.target_side = model_input_side(predictor)

    def cost(self, inputs: list) -> int:
        # decoded RGB: 3 bytes a pixel
        return sum(im.width * im.height * 3 for im in inputs)

    def item_schema(self, settings: ServeSettings) -> dict:
        # base64 grows 3 bytes into 4 characters; a data-URL prefix adds a few more
        return {"type": "string", "maxLength": settings.max_image_bytes * 4 // 3 + 64, "minLength": 1}

    def decode_item(self, i: int, item: Any, settings: ServeSettings):
        if not isinstance(item, str):
            raise InputError(f"inputs[{i}]: expected {self.input_kind}, got {_type_name(item)}")
        encoded = DATA_URL.sub("", item.strip(), count=1)
        if len(encoded) > settings.max_image_bytes * 4 // 3 + 4:
            raise InputError(
                f"inputs[{i}]: image is larger than the limit of {settings.max_image_bytes:,} bytes (--max-image-bytes)"
            )
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(
                f"inputs[{i}]: not valid base64; send the image file's bytes base64-encoded (or a data: URL)"
            ) from None
        return self.open_image(f"inputs[{i}]", raw, settings, self.target_side)

    def decode_form(self, texts: list[str], files: list[bytes], settings: ServeSettings) -> list:
        if files:
            items = self.split_inputs(files, settings)
            return [
                self.open_image(f"file {i}", raw, settings, self.target_side) for i, raw in enumerate(items)
            ]
        if texts:  # base64 strings sent as form fields
            return self.decode(texts, settings)
        raise InputError("multipart body has no file; upload one or more image files")

    @staticmethod
    def open_image(where: str, raw: bytes, settings: ServeSettings, target_side: int | None = None):
        """One encoded image -> RGB, its shorter side reduced to ``target_side`` when larger.

        Raises:
            InputError: naming ``where`` for any image that is too large, not of an allowed format, or
                that fails to decode for whatever reason (never another exception).
        """
        # PIL load on first use, not when adapters is imported
        from PIL import Image, UnidentifiedImageError

        if len(raw) > settings.max_image_bytes:
            raise InputError(
                f"{where}: image has {len(raw):,} bytes, more than the limit of {settings.max_image_bytes:,} (--max-image-bytes)"
            )
        try:
            image = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)  # reads the header only
            if image.width * image.height > settings.max_image_pixels:
                raise InputError(
                    f"{where}: image is {image.width}x{image.height} pixels, more than the limit of "
                    f"{settings.max_image_pixels:,} pixels (--max-image-pixels)"
                )
            if target_side:
                image.draft("RGB", _scaled(image.size, target_side))  # JPEG: decode at a reduced scale
            image = image.convert("RGB")  # decodes the pixels (the first frame of an animation)
            size = _scaled(image.size, target_side) if target_side else image.size
            return image if size == image.size else image.resize(size, Image.BICUBIC, reducing_gap=2.0)
        except InputError:
            raise
        except UnidentifiedImageError:
            raise InputError(
                f"{where}: not a readable image file (allowed formats: {', '.join(IMAGE_FORMATS)})"
            ) from None
        except Exception as err:  # Pillow raises many kinds (OSError, ValueError, SyntaxError, ...)
            log.debug("%s: image decode failed", where, exc_info=True)
            raise InputError(f"{where}: not a readable image file ({type(err).__name__})") from None

    def prediction_schema(self) -> dict:
        return CLASSIFICATION

    def warmup_inputs(self) -> list:
        # PIL load on first use, not when adapters is imported
        from PIL import Image

        return [Image.new("RGB", (64, 64), (127, 127, 127))]


def _scaled(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` reduced so its shorter side is ``side`` (unchanged if it is already no larger)."""
    w, h = size
    scale = side / min(w, h)
    if scale >= 1:
        return size
    return max(1, round(w * scale)), max(1, round(h * scale))


def model_input_side(predictor: Any) -> int | None:
    """The largest side of the image a predictor's preprocessing produces (None when it does not say)."""
    pre = getattr(predictor, "preprocess", None)
    size = getattr(pre, "size", None)
    if size is None and getattr(pre, "processor", None) is not None:
        size = getattr(pre.processor, "size", None) or getattr(pre.processor, "crop_size", None)
    if isinstance(size, dict):  # a Hugging Face processor: {"height", "width"} or {"shortest_edge"}
        size = [v for v in size.values() if isinstance(v, int)]
    if isinstance(size, int):
        size = [size]
    try:
        side = max(int(v) for v in size)
    except (TypeError, ValueError):
        return None
    return side if side > 0 else None


class GenerationAdapter(TaskAdapter):
    """Inputs are prompts; each prediction is ``{"text": completion}``."""

    task = "generation"
    input_kind = "a prompt string"

    def prediction_schema(self) -> dict:
        return {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

    def warmup_inputs(self) -> list:
        return ["Hello"]


# task name (labels.json "task") -> adapter; one line per task
ADAPTERS: dict[str, type[TaskAdapter]] = {
    "generation": GenerationAdapter,
    "image-classification": ImageClassificationAdapter,
    "text-classification": TextClassificationAdapter,
    "token-classification": TokenClassificationAdapter,
}


def adapter_for(task: str) -> TaskAdapter:
    """The adapter of ``task``.

    Raises:
        RegistryError: for a task without an adapter.
    """

    if task not in ADAPTERS:
        raise RegistryError(
            f"task {task!r} cannot be served yet (no adapter in transferkit.serving.adapters.ADAPTERS; "
            f"served: {', '.join(sorted(ADAPTERS))})"
        )
    return ADAPTERS[task]()


__all__ = ["ADAPTERS", "InputError", "TaskAdapter", "adapter_for"]
