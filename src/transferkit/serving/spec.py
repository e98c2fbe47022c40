"""OpenAPI pieces of ``/v1/predict``: request and response schemas come from the task's adapter."""

from __future__ import annotations

from transferkit.serving.adapters import TaskAdapter
from transferkit.serving.settings import ServeSettings

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "what was wrong and what to do"}},
    "required": ["detail"],
}


def _error(description: str, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": _DETAIL}}}
    if headers:
        out["headers"] = headers
    return out


_RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
ERRORS = {
    400: _error("malformed request"),
    401: _error("missing or invalid API key (Authorization: Bearer <key>)"),
    403: _error("not allowed (a reload folder outside --reload-root)"),
    404: _error("not found"),
    408: _error("request body not received within --body-timeout-s"),
    409: _error("conflicts with the server's state"),
    413: _error("request body larger than --max-body-bytes"),
    415: _error("Content-Type is neither application/json nor multipart/form-data"),
    422: _error("inputs refused (wrong type, empty, too many, too long, not an image ...)"),
    429: _error("too soon after the last reload; retry after Retry-After seconds", _RETRY),
    500: _error("the model failed on these inputs"),
    503: _error("queue full or shutting down; retry after Retry-After seconds", _RETRY),
    504: _error("no prediction within --request-timeout-s"),
}


def predict_openapi(adapter: TaskAdapter, settings: ServeSettings) -> dict:
    """``@app.post`` keyword arguments documenting ``/v1/predict`` for ``adapter``'s task."""
    content = {"application/json": {"schema": adapter.request_schema(settings)}}
    if adapter.task == "image-classification":
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "properties": {"inputs": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["inputs"],
            }
        }
    ok = {
        "type": "object",
        "properties": {
            "predictions": {
                "type": "array",
                "items": adapter.prediction_schema(),
                "description": "one prediction per input, in input order",
            },
            "model_version": {"type": "string", "description": "the model version that answered"},
        },
        "required": ["predictions", "model_version"],
    }
    return {
        "description": f"Predictions of the {adapter.task} model for one input or a list of inputs.",
        "openapi_extra": {"requestBody": {"required": True, "content": content}},
        "responses": {
            200: {
                "description": "predictions in input order",
                "content": {"application/json": {"schema": ok}},
            },
            **{code: ERRORS[code] for code in (401, 408, 413, 415, 422, 503, 504)},
        },
    }


__all__ = ["ERRORS", "predict_openapi"]
