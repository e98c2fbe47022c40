"""Reading a request: the body within a size and a time limit, its JSON or multipart form, the disconnect.

Every malformed body becomes an :class:`~fastapi.HTTPException` or an
:class:`~transferkit.serving.adapters.InputError` with one line that says what was wrong, never a 500.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from transferkit.serving.adapters import InputError
from transferkit.serving.settings import ServeSettings


def content_type(request: Request) -> str:
    """The media type of the request, lower-cased, without parameters (``""`` when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int, timeout_s: float, flag: str = "--max-body-bytes") -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (never fully buffered) and
    with 408 when it has not all arrived within ``timeout_s`` (a slow upload cannot hold a worker)."""
    declared = request.headers.get("content-length")
    too_big = f"request body is larger than the limit of {limit:,} bytes ({flag})"
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_big)

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(
            408, f"request body not received within {timeout_s:g} s (--body-timeout-s)"
        ) from None


async def parse_form(request: Request, body: bytes, settings: ServeSettings) -> tuple[list[str], list[bytes]]:
    """``multipart/form-data``: the ``inputs`` text fields and every uploaded file, in order."""

    async def stream():
        yield body

    if "boundary=" not in request.headers.get("content-type", ""):
        raise InputError("multipart body: the Content-Type has no boundary parameter")
    parser = MultiPartParser(
        request.headers,
        stream(),
        max_files=settings.max_inputs,
        max_fields=settings.max_inputs,
        max_part_size=settings.max_body_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise InputError(f"multipart body: {err.message}") from None
    except (KeyError, ValueError, UnicodeError):  # a boundary or header the parser cannot read
        raise InputError("multipart body: malformed (boundary or part headers)") from None
    texts, files = [], []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append(await value.read())
        elif name == "inputs":
            texts.append(value)
    await form.close()
    return texts, files


def json_inputs(body: bytes) -> Any:
    """The ``inputs`` of a JSON body (raises :class:`InputError`)."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise InputError('body is JSON nested too deeply; send {"inputs": [...]}') from None
    except UnicodeDecodeError:
        raise InputError('body is not valid UTF-8 JSON; send {"inputs": [...]}') from None
    except ValueError as err:  # JSONDecodeError, or an integer literal of too many digits
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "number too long"
        raise InputError(f'body is not valid JSON ({reason}); send {{"inputs": [...]}}') from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InputError('body must be a JSON object with an "inputs" field: {"inputs": ["a text", ...]}')
    extra = sorted(set(payload) - {"inputs"})
    if extra:
        names = ", ".join(ascii(name[:40]) for name in extra[:3]) + (", ..." if len(extra) > 3 else "")
        raise InputError(f'unknown field(s) {names}; the body is {{"inputs": [...]}}')
    return payload["inputs"]


def reload_body(body: bytes) -> str | None:
    """The ``run`` of a ``POST /admin/reload`` body (None: the folder being served)."""
    usage = 'reload body must be empty, {} or {"run": "folder"}'
    if not body.strip():
        return None
    try:
        payload = json.loads(body)
    except (RecursionError, ValueError):
        raise HTTPException(422, usage) from None
    if not isinstance(payload, dict) or set(payload) - {"run"} or not isinstance(payload.get("run", ""), str):
        raise HTTPException(422, usage)
    return payload.get("run")


async def wait_disconnect(request: Request) -> None:
    """Returns once the client has gone (call only after the body was read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


__all__ = ["content_type", "json_inputs", "parse_form", "read_body", "reload_body", "wait_disconnect"]
