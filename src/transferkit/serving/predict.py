"""``POST /v1/predict``: decode the request through the task's adapter, queue it on the micro-batcher, answer
with its predictions (4xx for a client's mistake, 503 when full or shutting down, 504 past the timeout)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from transferkit.errors import TransferkitError
from transferkit.serving.adapters import InputError
from transferkit.serving.batching import Closed, QueueFull
from transferkit.serving.body import content_type, json_inputs, parse_form, read_body, wait_disconnect
from transferkit.serving.model import ModelSlot
from transferkit.serving.observability import Metrics
from transferkit.serving.settings import ServeSettings
from transferkit.serving.spec import predict_openapi

log = logging.getLogger("transferkit.serving")


def _fail(status: int, message: str, headers: dict | None = None):
    raise HTTPException(status, message, headers=headers)


def add_predict_route(
    app: FastAPI, slot: ModelSlot, settings: ServeSettings, metrics: Metrics, adapter, authorize
) -> None:
    """Adds ``POST /v1/predict`` for ``adapter``'s task (its OpenAPI schema is fixed here)."""
    decodes = asyncio.Semaphore(settings.max_concurrent_decodes)  # bounds decoded images in memory

    @app.post("/v1/predict", summary="Predict", **predict_openapi(adapter, settings))
    async def predict(request: Request) -> JSONResponse:
        authorize(request)
        ctype = content_type(request)
        if ctype not in ("application/json", "multipart/form-data") and not ctype.endswith("+json"):
            _fail(
                415,
                f"Content-Type must be application/json or multipart/form-data, got {ctype[:60] or 'none'!r}",
            )
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        inputs = await _decode(request, ctype, body)
        request.state.inputs = len(inputs)
        model = slot.current  # may have been swapped while decoding; same task, so same adapter
        request.state.model_version = model.version
        try:
            future = model.batcher.submit(inputs, model.adapter.cost(inputs))
        except QueueFull as err:
            metrics.rejected.labels("queue_full").inc()
            _fail(503, str(err), {"Retry-After": str(err.retry_after)})
        except Closed:
            _fail(503, "the server is shutting down; retry shortly", {"Retry-After": "1"})
        gone = asyncio.ensure_future(wait_disconnect(request))
        try:
            done, _ = await asyncio.wait(
                {future, gone}, timeout=settings.request_timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            gone.cancel()
        if future not in done:
            future.cancel()  # still queued: the batcher skips it
            if gone in done:  # nobody is left to answer
                metrics.rejected.labels("disconnected").inc()
                _fail(499, "the client disconnected before its prediction")
            metrics.rejected.labels("timeout").inc()
            _fail(504, f"no prediction within {settings.request_timeout_s:g} s (--request-timeout-s)")
        try:
            outputs = future.result()
        except (TransferkitError, InputError) as err:
            _fail(422, str(err))
        except Exception:
            log.exception("prediction failed")
            _fail(500, "prediction failed; the server log has the details")
        return JSONResponse({"predictions": model.adapter.encode(outputs), "model_version": model.version})

    async def _decode(request: Request, ctype: str, body: bytes) -> list:
        """The request's predictor inputs (422 with one line for anything the adapter refuses)."""
        model = slot.current
        try:
            if ctype == "multipart/form-data":
                texts, files = await parse_form(request, body, settings)
                decode, raw = model.adapter.decode_form, (texts, files, settings)
            else:
                decode, raw = model.adapter.decode, (json_inputs(body), settings)
            if not model.adapter.decode_in_thread:
                return decode(*raw)
            async with decodes:  # at most --max-concurrent-decodes requests hold decoded images at once
                return await asyncio.to_thread(decode, *raw)
        except InputError as err:
            _fail(422, str(err))
