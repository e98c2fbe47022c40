"""``transferkit serve``: a FastAPI + uvicorn prediction service over any run folder.

Layout: ``settings`` (typed settings, CLI flags), ``adapters`` (one per task: request inputs -> predictor
inputs, outputs -> JSON), ``batching`` (dynamic micro-batching), ``model`` (load, warm, hot reload),
``observability`` (Prometheus metrics, JSON access logs), ``security`` (Host check, keys, reload root),
``body`` (reading and parsing requests), ``admin`` (``/admin/*``), ``app`` (routes), ``server`` (uvicorn,
workers, signals), ``static/`` (the page at ``/``). SECURITY.md says what the server promises.

This package sits on top of the library: it imports ``transferkit``; the library never imports it.
"""

from __future__ import annotations

from transferkit.serving.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]


def __getattr__(name: str):
    # FastAPI and uvicorn load only when the app is built
    if name == "create_app":
        from transferkit.serving.app import create_app

        return create_app
    if name == "serve":
        from transferkit.serving.server import serve

        return serve
    raise AttributeError(f"module 'transferkit.serving' has no attribute {name!r}")
