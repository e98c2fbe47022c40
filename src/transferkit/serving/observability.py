"""Prometheus metrics and JSON-lines access logs.

Each app owns its own :class:`prometheus_client.CollectorRegistry`, so several apps (tests, reloads) never
clash. Under ``--workers N`` the server sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start: every
worker then writes its values there and ``GET /metrics`` answers the sum over all workers, whichever one
serves the scrape (prometheus_client's multiprocess mode). Access logs name the route, status, latency and inputs; never headers, so API keys cannot leak.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# label values must stay a fixed set: a client choosing the method must not grow the metrics without bound
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Metrics:
    """The service's Prometheus metrics (``GET /metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "transferkit_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "transferkit_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "transferkit_batch_size", "inputs per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "transferkit_batch_seconds", "time of one forward pass", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "transferkit_queue_depth",
            "inputs waiting for the model",
            registry=r,
            multiprocess_mode="livesum",  # workers: the sum over the live ones
        )
        self.inputs = Counter("transferkit_inputs", "inputs predicted", registry=r)
        self.rejected = Counter(
            "transferkit_rejected", "requests refused before the model", ["reason"], registry=r
        )
        self.reloads = Counter("transferkit_reloads", "model reloads by result", ["result"], registry=r)

    def exposition(self) -> bytes:
        """The text ``GET /metrics`` answers: this process's metrics, or every worker's under ``--workers``."""
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.inputs.inc(size)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test capture, redirection)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def access_logger(path: Path | None) -> logging.Logger:
    """A logger that writes one JSON object per line to ``path`` (appended) or standard error."""
    logger = logging.getLogger(f"transferkit.access.{path or 'stderr'}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.FileHandler(path, encoding="utf-8") if path else _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


def _route_of(scope) -> str:
    # the route template ("/v1/predict"), never the raw path: keeps metric labels bounded
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class ObservabilityMiddleware:
    """Pure ASGI middleware: request counts and latency for Prometheus, one access-log line per request,
    and an ``X-Request-ID`` on every answer (the client's, if it sent a short plain one)."""

    def __init__(self, app, metrics: Metrics, logger: logging.Logger):
        self.app = app
        self.metrics = metrics
        self.logger = logger

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = rid if REQUEST_ID.match(rid) else uuid.uuid4().hex[:16]  # echo only a plain, short id
        scope.setdefault("state", {})["request_id"] = rid
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            route = _route_of(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            state = scope.get("state", {})
            client = scope.get("client") or ("", 0)
            record = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                + f".{int(time.time() * 1000) % 1000:03d}Z",
                "request_id": rid,
                "client": client[0],
                "method": scope["method"][:16],
                "path": scope["path"],
                "status": status,
                "ms": round(seconds * 1000, 2),
            }
            for key in ("inputs", "model_version", "error"):
                if key in state:
                    record[key] = state[key]
            self.logger.info(json.dumps(record))  # ASCII: a lone surrogate in a message cannot break it


__all__ = ["Metrics", "ObservabilityMiddleware", "access_logger"]
