"""The FastAPI app: ``/v1/predict`` through the micro-batcher, health, model card, metrics, reload, page.

Example:
    >>> from transferkit.serving import ServeSettings, create_app
    >>> app = create_app("runs/my-run", ServeSettings())  # doctest: +SKIP
    >>> # uvicorn.run(app) or `transferkit serve runs/my-run`
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from transferkit import __version__
from transferkit.errors import ConfigError
from transferkit.manifest import manifest_path, read_manifest
from transferkit.serving.adapters import adapter_for
from transferkit.serving.admin import add_admin_routes
from transferkit.serving.model import ModelSlot, default_loader
from transferkit.serving.observability import MULTIPROC_ENV, Metrics, ObservabilityMiddleware, access_logger
from transferkit.serving.predict import add_predict_route
from transferkit.serving.security import BearerKeys, HostGuard, NotAllowed, allowed_host_names
from transferkit.serving.settings import ServeSettings, load_admin_keys, load_api_keys
from transferkit.serving.spec import ERRORS

log = logging.getLogger("transferkit.serving")
STATIC = resources.files("transferkit.serving") / "static"


def _fail(status: int, message: str, headers: dict | None = None):
    raise HTTPException(status, message, headers=headers)


def create_app(
    run_dir: str | Path,
    settings: ServeSettings | None = None,
    loader: Callable[[str | Path], Any] = default_loader,
    api_keys: list[str] | None = None,
    admin_keys: list[str] | None = None,
) -> FastAPI:
    """Builds the service for one run folder (loaded and warmed when the app starts).

    Args:
        run_dir: A run folder (or exported folder) that ``loader`` can load.
        settings: Limits, batching and auth settings (defaults: :class:`ServeSettings`).
        loader: ``run_dir -> predictor`` (default: ``transferkit.load``).
        api_keys: Accepted keys; default: read by :func:`load_api_keys` (env var and key file).
        admin_keys: Keys of ``/admin/*``; default: read by :func:`load_admin_keys`. None found: admin off.

    Raises:
        ConfigError: for a non-loopback host without keys, an unreadable key file, or an admin key that
            is also an API key.
        RegistryError, RunError: for a run no adapter serves or that cannot be read.
    """
    settings = settings or ServeSettings()
    keys, admin = _keys(settings, api_keys, admin_keys)
    metrics = Metrics()
    slot = ModelSlot(settings, loader, metrics)
    # the schema is fixed at start-up, so the task must be known before loading the model
    task = _peek_task(run_dir, loader)
    adapter = adapter_for(task)

    lifespan, _reload = _lifecycle(slot, run_dir, metrics)

    app = FastAPI(
        title="transferkit prediction service",
        version=_version(),
        description=f"Serves the {task} run `{Path(run_dir).name}` with dynamic micro-batching.",
        lifespan=lifespan,
        docs_url=None,  # served below from local files: the default page pulls Swagger UI from a CDN
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.slot = slot
    app.state.metrics = metrics
    app.state.settings = settings
    app.add_middleware(HostGuard, allowed=allowed_host_names(settings))
    # added last, so outermost: refusals of the Host check are counted and logged too
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, logger=access_logger(settings.access_log))
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    def authorize(request: Request) -> None:
        if keys:
            keys.check(request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        request.state.error = err.detail
        return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)

    add_info_routes(app, slot, metrics, authorize)
    add_predict_route(app, slot, settings, metrics, adapter, authorize)
    add_admin_routes(app, slot, settings, admin, Path(run_dir), _reload)

    if keys:
        _declare_bearer(app)
    return app


def _keys(settings: ServeSettings, api_keys, admin_keys) -> tuple[BearerKeys, BearerKeys]:
    """The predict keys and the admin keys (given, or read from the environment and key files)."""
    api_keys = load_api_keys(settings) if api_keys is None else list(api_keys)
    if admin_keys is None:
        admin_keys = load_admin_keys(settings, api_keys)
    elif set(admin_keys) & set(api_keys):
        raise ConfigError("an admin key is also an API key: admin keys must differ from the predict keys")
    return BearerKeys(api_keys, "API"), BearerKeys(admin_keys, "admin")


def _lifecycle(slot: ModelSlot, run_dir: str | Path, metrics: Metrics):
    """(lifespan: load and warm at start, SIGHUP reloads, close at shutdown; reload(run) -> model)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await slot.start(run_dir)
        hup = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP")
        if hup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_on_signal)
        try:
            yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await slot.close()  # uvicorn has already let in-flight requests finish
            if os.environ.get(MULTIPROC_ENV):  # a retiring worker's gauges leave the sum
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    def _reload_on_signal() -> None:
        log.info("SIGHUP: reloading %s", slot.current.run_dir)
        asyncio.get_running_loop().create_task(_reload(None))

    async def _reload(run: Path | None, root: Path | None = None):
        try:
            model = await slot.reload(run, root)
        except NotAllowed:  # run_copy logged what it met
            metrics.reloads.labels("failed").inc()
            log.warning("reload refused; still serving %s", slot.current.version)
            raise
        except Exception:
            metrics.reloads.labels("failed").inc()
            log.exception("reload failed; still serving %s", slot.current.version)
            raise
        metrics.reloads.labels("ok").inc()
        return model

    return lifespan, _reload


def add_info_routes(app: FastAPI, slot: ModelSlot, metrics: Metrics, authorize) -> None:
    """The page, health and readiness, Prometheus metrics, the model card and its confusion matrix."""

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/healthz", summary="Alive", responses={200: {"description": "the process answers"}})
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Model loaded and warm", responses={503: ERRORS[503]})
    async def readyz() -> JSONResponse:
        model = slot.current
        task_alive = model is not None and model.batcher.running
        body = {"ready": task_alive, "version": model.version if model else None}
        if model is not None:
            body["warmup_seconds"] = round(model.warmup_seconds, 4)
        return JSONResponse(body, status_code=200 if task_alive else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", summary="The served model", responses={401: ERRORS[401]})
    async def model_card(request: Request) -> dict:
        authorize(request)
        return slot.current.describe()

    @app.get(
        "/v1/model/confusion_matrix.png",
        summary="The run's test confusion matrix",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 401: ERRORS[401], 404: ERRORS[404]},
    )
    async def confusion_png(request: Request):
        authorize(request)
        png = slot.current.confusion_png  # read with the model (from its private copy under a reload root)
        if png is None:
            _fail(404, "this run has no confusion_matrix.png")
        return Response(png, media_type="image/png")


def add_offline_docs(app: FastAPI) -> None:
    """``GET /docs``: Swagger UI from the ``swagger-ui-bundle`` package's files (``/docs-assets``), so the
    page works on machines without internet access."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def _declare_bearer(app: FastAPI) -> None:
    """Marks ``/v1/*`` and ``/admin/*`` as needing ``Authorization: Bearer`` in ``/openapi.json``."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = build()
            spec.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            for path, ops in spec["paths"].items():
                if path.startswith(("/v1/", "/admin/")):
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi


def _peek_task(run_dir: str | Path, loader) -> str:
    """The task of a run from its manifest (what ``transferkit.load`` dispatches on)."""
    if getattr(loader, "task", None):
        return loader.task  # a custom loader may say which task it loads

    if not manifest_path(run_dir).is_file():
        from transferkit.artifacts import read_run

        read_run(run_dir)  # raises the RunError that says what is missing
    return read_manifest(run_dir).task  # a RunError that names the file if it is unreadable


def _version() -> str:

    return __version__


__all__ = ["create_app"]
