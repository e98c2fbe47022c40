"""A 60-second soak of ``transferkit serve``: 64 clients in flight plus slow-body clients, no 5xx, bounded RSS.

The fast clients each keep one one-text ``POST /v1/predict`` in flight for ``SOAK_SECONDS``; the slow clients
announce a body (``Content-Length``) and then trickle it a byte a second, as a slowloris attack would: the
server must answer them 408 after ``--body-timeout-s`` and keep serving everyone else. The server's resident
memory is sampled every half second; its peak may exceed the level after warm-up by at most ``RSS_BOUND_MIB``
(the bound SECURITY.md states).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import serve_cli

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("TRANSFERKIT_SOAK_SECONDS", "60"))
FAST_CLIENTS = 64
SLOW_CLIENTS = 8
BODY_TIMEOUT_S = 3
RSS_BOUND_MIB = 256
TEXTS = ["a gripping, beautifully shot film", "dull and far too long", "the plot", "great acting " * 20]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss_mib(self.pid))
            time.sleep(0.5)


async def _fast(url: str, headers: dict, stop_at: float, statuses: dict, i: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        n = i
        while time.monotonic() < stop_at:
            try:
                r = await client.post("/v1/predict", json={"inputs": [TEXTS[n % len(TEXTS)]]})
                key = r.status_code
            except httpx.HTTPError as err:
                key = type(err).__name__
            statuses[key] = statuses.get(key, 0) + 1
            n += FAST_CLIENTS


async def _slow(port: int, key: str, stop_at: float, answers: list) -> None:
    """Announces a 10 kB body and sends it a byte a second until the server answers or closes."""
    while time.monotonic() < stop_at:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: 10000\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        status = None
        try:
            for _ in range(60):
                writer.write(b" ")
                await writer.drain()
                try:
                    line = await asyncio.wait_for(reader.readline(), timeout=1.0)
                except TimeoutError:
                    continue
                if line:
                    status = int(line.split()[1])
                break
        except (ConnectionError, OSError):
            status = "closed"
        finally:
            writer.close()
        answers.append(status)


async def _soak(server) -> tuple[dict, list]:
    statuses: dict = {}
    answers: list = []
    stop_at = time.monotonic() + SOAK_SECONDS
    await asyncio.gather(
        *(_fast(server.url, server.headers, stop_at, statuses, i) for i in range(FAST_CLIENTS)),
        *(_slow(server.port, server.key, stop_at, answers) for _ in range(SLOW_CLIENTS)),
    )
    return statuses, answers


def test_sixty_seconds_at_concurrency_64_with_slow_bodies(served_run: Path, tmp_path: Path) -> None:
    key = "soak-key-0123456789"
    server = serve_cli(
        served_run, tmp_path / "server.log", "--body-timeout-s", str(BODY_TIMEOUT_S), "--max-wait-ms", "5",
        env={"TRANSFERKIT_API_KEYS": key}, key=key,
    )  # fmt: skip
    try:
        with server.client(timeout=60) as c:  # warm-up: the level the bound is measured from
            for text in TEXTS * 4:
                assert c.post("/v1/predict", json={"inputs": [text]}).status_code == 200
        baseline = _rss_mib(server.proc.pid)
        sampler = _Sampler(server.proc.pid)
        sampler.start()
        statuses, answers = asyncio.run(_soak(server))
        sampler.running = False
        sampler.join()
        with server.client(timeout=30) as c:  # still healthy afterwards
            assert c.get("/healthz").status_code == 200
            assert c.post("/v1/predict", json={"inputs": ["after"]}).status_code == 200
    finally:
        server.stop()
    served = statuses.get(200, 0)
    assert not {k: v for k, v in statuses.items() if k != 200}, f"fast clients saw {statuses}"
    assert served >= FAST_CLIENTS, statuses  # it kept serving through the soak
    assert answers and all(a in (408, "closed") for a in answers), answers  # slow bodies are cut off
    assert sampler.peak - baseline <= RSS_BOUND_MIB, (baseline, sampler.peak)
