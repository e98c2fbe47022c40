"""``transferkit serve`` as a real uvicorn process on 127.0.0.1: endpoints over the wire, micro-batching of
concurrent requests, refusals, reload under load (admin endpoint and SIGHUP) with no lost request,
graceful shutdown, and schemathesis against /openapi.json with no 5xx."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serve_helpers import ServerProcess, free_port, serve_cli


def metric(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (any labels) in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_endpoints_over_http(live_server: ServerProcess) -> None:
    with live_server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["ready"] is True
        card = c.get("/v1/model").json()
        assert card["task"] == "text-classification" and card["labels"] == ["neg", "pos"]
        r = c.post("/v1/predict", json={"inputs": ["superb", "awful", "the plot"]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
        assert r.headers["x-request-id"]
        assert c.get("/openapi.json").json()["paths"]["/v1/predict"]
        assert "transferkit_requests_total" in c.get("/metrics").text
        page = c.get("/")
        assert page.status_code == 200 and "<title>transferkit</title>" in page.text


def test_api_keys_from_file_and_env(live_server: ServerProcess, live_keys: tuple[str, str]) -> None:
    url = f"{live_server.url}/v1/predict"
    r = httpx.post(url, json={"inputs": ["x"]})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"]
    assert (
        httpx.post(url, json={"inputs": ["x"]}, headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    for key in live_keys:
        assert (
            httpx.post(url, json={"inputs": ["x"]}, headers={"Authorization": f"Bearer {key}"}).status_code
            == 200
        )
    time.sleep(0.2)
    log = live_server.log.read_text()
    assert '"status": 401' in log and not any(key in log for key in live_keys)


def test_refusals_over_http(live_server: ServerProcess) -> None:
    with live_server.client() as c:
        r = c.post("/v1/predict", content=b"x" * 500_000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]
        r = c.post("/v1/predict", json={"inputs": ["a"] * 17})
        assert r.status_code == 422 and "--max-inputs" in r.json()["detail"]
        r = c.post("/v1/predict", content=b"a text", headers={"content-type": "text/plain"})
        assert r.status_code == 415


def test_concurrent_requests_share_forward_passes(live_server: ServerProcess) -> None:
    with live_server.client() as c:
        before = metric(c.get("/metrics").text, "transferkit_batch_size_count")
    start = threading.Barrier(16)

    def one(i: int) -> int:
        with live_server.client() as client:
            start.wait()
            return client.post("/v1/predict", json={"inputs": [f"text number {i}"]}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(16)))
    assert codes == [200] * 16
    with live_server.client() as c:
        passes = metric(c.get("/metrics").text, "transferkit_batch_size_count") - before
    assert 1 <= passes < 16  # 16 requests needed fewer forward passes


def _load(
    server: ServerProcess, stop: threading.Event, results: list, versions: set, resets: list | None = None
) -> None:
    """Posts predictions until ``stop``; a dropped connection counts as a lost request. With ``resets``, a
    request whose kept-alive connection was closed under it (before any answer) is sent again once, as an
    HTTP client does for an idempotent request, and the reset is recorded there."""
    with server.client(timeout=30) as client:
        while not stop.is_set():
            for attempt in (1, 2):
                try:
                    r = client.post("/v1/predict", json={"inputs": ["superb film", "dreadful"]})
                    results.append(r.status_code)
                    if r.status_code == 200:
                        versions.add(r.json()["model_version"])
                except (httpx.ReadError, httpx.RemoteProtocolError) as err:
                    if resets is not None and attempt == 1:
                        resets.append(repr(err))
                        continue
                    results.append(repr(err))
                except httpx.HTTPError as err:
                    results.append(repr(err))
                break


def test_reload_under_load_loses_no_request(live_server: ServerProcess, admin_key: str) -> None:
    c = live_server.client(timeout=60)
    version = c.get("/v1/model").json()["version"]
    stop, results, versions = threading.Event(), [], set()
    threads = [threading.Thread(target=_load, args=(live_server, stop, results, versions)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for _ in range(2):
            r = c.post("/admin/reload", json={}, headers={"Authorization": f"Bearer {admin_key}"})
            assert r.status_code == 200, r.text
            time.sleep(0.3)
        live_server.proc.send_signal(signal.SIGHUP)  # the same, by signal
        deadline = time.monotonic() + 60
        while c.get("/v1/model").json()["version"] == r.json()["version"]:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert results and all(code == 200 for code in results), [c for c in results if c != 200][:5]
    generation = int(version.rsplit("#", 1)[1])
    assert len(versions) >= 3, versions  # answers came from old and new versions alike
    assert c.get("/v1/model").json()["version"].endswith(f"#{generation + 3}")
    c.close()
    assert live_server.proc.poll() is None


FAKE_SERVER = Path(__file__).with_name("fake_server.py")


def test_graceful_shutdown_finishes_in_flight_requests(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, str(FAKE_SERVER), "text-classification", str(port), str(tmp_path), "0.5"]
    server = ServerProcess(argv, port, tmp_path / "log")
    server.wait_ready()

    def one(i: int):
        try:
            return httpx.post(f"{server.url}/v1/predict", json={"inputs": [f"t{i}"]}, timeout=30).status_code
        except httpx.HTTPError as err:
            return repr(err)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(one, i) for i in range(3)]  # one at a time: 0.5, 1.0, 1.5 s
        deadline = time.monotonic() + 30
        # all three are in: one computing, two queued
        while metric(httpx.get(f"{server.url}/metrics").text, "transferkit_queue_depth") < 2:
            assert time.monotonic() < deadline, "requests never queued"
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)
        codes = [f.result() for f in futures]
    assert codes == [200, 200, 200]
    # uvicorn re-raises the signal once shut down, so the process ends "killed by SIGTERM", on purpose
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_access_log_lines_are_json(live_server: ServerProcess) -> None:
    with live_server.client() as c:
        c.post("/v1/predict", json={"inputs": ["x"]}, headers={"x-request-id": "from-test-7"})
    time.sleep(0.2)
    lines = [ln for ln in live_server.log.read_text().splitlines() if ln.startswith("{")]
    records = [json.loads(ln) for ln in lines]
    mine = [r for r in records if r.get("request_id") == "from-test-7"]
    assert mine and mine[0]["status"] == 200 and mine[0]["path"] == "/v1/predict"


def test_public_address_without_keys_is_refused(served_run: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRANSFERKIT_API_KEYS"}
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "transferkit.cli.main",
        "serve",
        str(served_run),
        "--host",
        "0.0.0.0",
        "--port",
        "0",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "API keys are required" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_workers_roll_on_sighup_without_losing_requests(
    served_run: Path, tmp_path: Path, admin_key: str
) -> None:
    psutil = pytest.importorskip("psutil")
    env = {"TRANSFERKIT_ADMIN_KEYS": admin_key}
    server = serve_cli(served_run, tmp_path / "log", "--workers", "2", env=env)
    try:

        def workers() -> set[int]:
            # uvicorn's workers are the children that answer; skip multiprocessing's resource tracker
            alive = set()
            for kid in psutil.Process(server.proc.pid).children():
                try:  # a retired worker may linger as a zombie for a moment
                    if kid.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(
                        kid.cmdline()
                    ):
                        alive.add(kid.pid)
                except psutil.Error:
                    pass
            return alive

        before = workers()
        assert len(before) == 2
        stop, results, versions, resets = threading.Event(), [], set(), []
        # a retiring worker closes its idle kept-alive connections: a request sent on one at that instant sees
        # a reset before any answer (uvicorn's shutdown), and is sent again once; none may be lost or fail
        threads = [
            threading.Thread(target=_load, args=(server, stop, results, versions, resets)) for _ in range(3)
        ]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            with server.client() as c:
                r = c.post("/admin/reload", json={}, headers={"Authorization": f"Bearer {admin_key}"})
                assert r.status_code == 202  # = SIGHUP to the main process
            deadline = time.monotonic() + 240
            while workers() & before or len(workers()) != 2:
                assert time.monotonic() < deadline, "workers were not replaced"
                time.sleep(0.5)
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert results and all(code == 200 for code in results), [c for c in results if c != 200][:5]
        assert len(resets) <= 3, resets  # at most one per client connection and roll
        # /metrics sums every worker's counts, retired ones included, whichever worker answers the scrape
        # (a request is counted once its response is sent, so the last few may land a moment later)
        with server.client() as c:

            def counted() -> float:
                text = c.get("/metrics").text
                line = [x for x in text.splitlines() if x.startswith("transferkit_requests_total{") and 'route="/v1/predict"' in x and 'status="200"' in x]  # fmt: skip
                return float(line[0].rsplit(" ", 1)[1]) if line else -1.0

            # a reset request may have been answered by the server before its connection broke: counted twice
            done = range(len(results), len(results) + len(resets) + 1)
            deadline, seen = time.monotonic() + 15, []
            while (n := counted()) not in done and time.monotonic() < deadline:
                seen.append(n)
                time.sleep(0.5)
            assert n in done, (len(results), len(resets), seen[-5:])
            assert [counted() for _ in range(3)] == [n] * 3  # every worker answers the same sum
    finally:
        server.stop()
