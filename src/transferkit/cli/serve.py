"""``transferkit serve``: serve a run over HTTP; the flags come from the typed serving settings.

``transferkit.serving.settings`` imports no FastAPI or torch, so building the parser stays cheap; the server
itself is imported inside ``cmd_serve``.
"""

from __future__ import annotations

import logging


def add_parsers(sub) -> None:
    from transferkit.serving.settings import ADMIN_KEYS_ENV, API_KEYS_ENV, add_arguments

    p = sub.add_parser(
        "serve",
        help="serve a run over HTTP (FastAPI + uvicorn, micro-batching, metrics, a page at /)",
        description=f"Serve RUN: POST /v1/predict, GET /healthz /readyz /v1/model /metrics /openapi.json and a page at /. "
        f"API keys: ${API_KEYS_ENV} (comma-separated) or --api-key-file; required off loopback. "
        f"POST /admin/reload only with admin keys (${ADMIN_KEYS_ENV} or --admin-key-file), for folders "
        "inside --reload-root. See SECURITY.md.",
    )
    p.add_argument("run", help="run folder")
    add_arguments(p)


def cmd_serve(args) -> int:
    from transferkit.serving.server import serve
    from transferkit.serving.settings import settings_from_args

    logging.getLogger("transferkit.serving").setLevel(logging.INFO)
    serve(args.run, settings_from_args(args))
    return 0
