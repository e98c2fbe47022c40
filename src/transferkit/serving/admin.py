"""``/admin/*``: off (404) unless admin keys are configured; reload loads only folders under the reload root.

Admin keys are not API keys (a key that predicts cannot reload), the body must be ``application/json`` (a
cross-site form cannot send it without a preflight that this server never grants), reloads are spaced by
``--reload-interval-s``, and a refusal never names a path or repeats a loader's exception.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from transferkit.errors import RunError
from transferkit.serving.body import content_type, read_body, reload_body
from transferkit.serving.model import ModelSlot, TaskMismatch
from transferkit.serving.security import BearerKeys, NotAllowed, RateLimit, reload_target
from transferkit.serving.settings import ADMIN_KEYS_ENV, ServeSettings
from transferkit.serving.spec import ERRORS

log = logging.getLogger("transferkit.serving")

RELOAD = {
    "type": "object",
    "properties": {
        "run": {
            "type": "string",
            "description": "folder to serve, inside the reload root (default: the current one)",
        }
    },
    "additionalProperties": False,
}
OFF = f"admin endpoints are off: start the server with admin keys (${ADMIN_KEYS_ENV} or --admin-key-file)"


def add_admin_routes(
    app: FastAPI,
    slot: ModelSlot,
    settings: ServeSettings,
    keys: BearerKeys,
    served: Path,
    reload: Callable[[Path | None, Path | None], Awaitable],
) -> None:
    """Adds ``POST /admin/reload`` (or, without admin keys, a 404 for every ``/admin/*`` request).

    ``reload(folder, root)`` loads the checked folder (None: the current one) from a private copy made beneath
    ``root`` without following links (:mod:`transferkit.serving.run_copy`), so a folder swapped for a link
    after the check is refused (403) instead of followed.
    """
    router = APIRouter()
    if not keys:

        @router.api_route("/admin/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
        async def admin_off(rest: str):
            raise HTTPException(404, OFF)

        app.include_router(router, include_in_schema=False)
        return

    root = Path(settings.reload_root) if settings.reload_root is not None else served
    limit = RateLimit(settings.reload_interval_s)
    refused = "reload refused: that folder is not allowed (--reload-root)"

    @router.post(
        "/admin/reload",
        summary="Load a new model version without dropping requests",
        responses={code: ERRORS[code] for code in (401, 403, 404, 409, 415, 422, 429)},
        openapi_extra={
            "requestBody": {"required": False, "content": {"application/json": {"schema": RELOAD}}}
        },
    )
    async def reload_route(request: Request) -> JSONResponse:
        keys.check(request)
        if content_type(request) != "application/json":
            raise HTTPException(415, "Content-Type must be application/json (send {} to reload the same run)")
        run = reload_body(await read_body(request, 64 * 1024, settings.body_timeout_s, "a reload body"))
        target = None
        if run is not None:
            try:
                target = reload_target(run, root)
            except NotAllowed:
                raise HTTPException(403, refused) from None
            if not target.is_dir():
                raise HTTPException(404, "reload refused: no such run folder under the reload root")
        wait = limit.wait_needed()
        if wait:
            raise HTTPException(
                429,
                f"a reload ran less than {settings.reload_interval_s:g} s ago (--reload-interval-s)",
                {"Retry-After": str(math.ceil(wait))},
            )
        if settings.workers > 1:
            if target is not None:
                raise HTTPException(
                    409, "with --workers > 1 only the served run folder can be reloaded (omit 'run')"
                )
            os.kill(os.getppid(), signal.SIGHUP)  # uvicorn replaces each worker once its successor is ready
            return JSONResponse({"status": "restarting workers"}, status_code=202)
        try:
            model = await reload(target, root)
        except NotAllowed:  # a link where the checked folder was: swapped since the check
            raise HTTPException(403, refused) from None
        except TaskMismatch as err:
            raise HTTPException(409, str(err)) from None
        except RunError:
            raise HTTPException(422, "reload refused: that folder is not a servable run") from None
        except Exception:  # anything a loader raises on a bad folder; the old model keeps serving
            raise HTTPException(
                422, "reload failed: the folder cannot be loaded (see the server log)"
            ) from None
        return JSONResponse({"status": "reloaded", "version": model.version, "run": model.run_dir.name})

    app.include_router(router)


__all__ = ["add_admin_routes"]
