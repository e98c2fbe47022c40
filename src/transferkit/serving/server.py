"""Running the app under uvicorn: one process, or ``--workers N`` processes sharing the socket.

* SIGTERM / SIGINT: uvicorn stops accepting, lets in-flight requests finish (up to the request timeout),
  then the app drains its batch queue.
* SIGHUP: with one worker the app reloads the run in place (the new model is swapped in once warm); with
  several, uvicorn replaces each worker only after its successor has loaded and warmed the model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

from transferkit.serving.observability import MULTIPROC_ENV
from transferkit.serving.settings import ServeSettings, load_admin_keys, load_api_keys

# how a worker process (started by uvicorn, possibly by spawn) learns what to serve; never holds keys
ENV_RUN = "TRANSFERKIT_SERVE_RUN"
ENV_SETTINGS = "TRANSFERKIT_SERVE_SETTINGS"

log = logging.getLogger("transferkit.serving")


def set_threads(settings: ServeSettings) -> int:
    """Sizes this worker's compute threads from the core count; returns torch's intra-op thread count.

    On 2 cores, torch's default (one thread per core in every worker) plus a tokenizer thread pool plus
    uvicorn's event loop oversubscribe the machine: each worker gets ``cores // workers`` torch threads
    (``--threads`` overrides) and the fast tokenizer runs without its own pool (it tokenizes a batch on the
    batching thread, between forward passes).
    """
    # torch loads when serving starts, not when the CLI parses `serve --help`
    import torch

    from transferkit.hardware import usable_cores  # it imports torch too

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cores = usable_cores()
    threads = settings.threads or max(1, cores // settings.workers)
    torch.set_num_threads(threads)
    log.info("serve: %d torch threads per worker (%d cores, %d workers)", threads, cores, settings.workers)
    return threads


def app_from_env():
    """uvicorn factory for worker processes: the run folder and settings come from the environment."""
    # transformers and the app load in the worker that serves, not when the CLI parses its arguments
    from transformers.utils import logging as hf_logging

    # fastapi, yaml, starlette load on first use, not when server is imported
    from transferkit.serving.app import create_app

    hf_logging.set_verbosity_error()  # as the CLI does in the main process: no progress bars per worker
    hf_logging.disable_progress_bar()
    settings = ServeSettings.model_validate_json(os.environ[ENV_SETTINGS])
    set_threads(settings)
    return create_app(os.environ[ENV_RUN], settings)


def uvicorn_options(settings: ServeSettings) -> dict:
    """The ``uvicorn.Config`` keywords every mode shares."""
    return dict(
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,  # our own JSON-lines access log replaces uvicorn's
        # in-flight requests get as long as their own timeout to finish on shutdown
        timeout_graceful_shutdown=math.ceil(settings.request_timeout_s) + 5,
        server_header=False,
        # past this many connections + requests uvicorn answers 503 at once instead of queueing more
        limit_concurrency=settings.limit_concurrency,
    )


def serve(run_dir: str | Path, settings: ServeSettings | None = None) -> None:
    """Serves ``run_dir`` until SIGTERM/SIGINT (blocking).

    Args:
        run_dir: A run folder written by ``transferkit fit`` (or an exported folder ``transferkit.load`` reads).
        settings: Host, port, workers, batching and limits.

    Raises:
        ConfigError: for a non-loopback host without API keys (unless ``no_auth_i_know``).
        RunError, RegistryError: for a folder that cannot be served.
    """
    import uvicorn

    settings = settings or ServeSettings()
    load_admin_keys(settings, load_api_keys(settings))  # fail before binding anything
    common = uvicorn_options(settings)
    if settings.workers == 1:
        from transferkit.serving.app import create_app

        set_threads(settings)
        app = create_app(run_dir, settings)
        log.info("transferkit serve: http://%s:%d", settings.host, settings.port)
        uvicorn.Server(uvicorn.Config(app, **common)).run()
        return
    # every worker writes its metrics here, so /metrics answers for all of them (see observability)
    own_metrics_dir = not os.environ.get(MULTIPROC_ENV)
    if own_metrics_dir:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="transferkit-metrics-")
    os.environ[ENV_RUN] = str(Path(run_dir).resolve())
    os.environ[ENV_SETTINGS] = json.dumps(settings.model_dump(mode="json"))
    log.info(
        "transferkit serve: http://%s:%d with %d workers", settings.host, settings.port, settings.workers
    )
    try:
        uvicorn.run(
            "transferkit.serving.server:app_from_env",
            factory=True,
            workers=settings.workers,
            # a replacement worker must load and warm the model before the old one retires (SIGHUP)
            timeout_worker_healthcheck=300,
            **common,
        )
    finally:
        if own_metrics_dir:
            shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)


__all__ = ["app_from_env", "serve", "set_threads", "uvicorn_options"]
