"""Real server processes for the serving tests: ``transferkit serve`` (or a small uvicorn script) on a free
loopback port, started and stopped by the test (imported by name: tests are not a package)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server subprocess on ``127.0.0.1:port``; its standard error goes to ``log`` (JSON access lines)."""

    def __init__(
        self, argv: list[str], port: int, log: Path, env: dict | None = None, key: str | None = None
    ):
        self.port, self.log, self.key = port, log, key
        self.url = f"http://127.0.0.1:{port}"
        self._log_file = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    @property
    def headers(self) -> dict:
        """The Authorization header of this server's API key (empty without one)."""
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def client(self, **kwargs) -> httpx.Client:
        """An HTTP client for this server, API key included."""
        return httpx.Client(base_url=self.url, headers=self.headers, **kwargs)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def serve_cli(
    run_dir: Path, log: Path, *flags: str, env: dict | None = None, key: str | None = None
) -> ServerProcess:
    """``transferkit serve RUN --port P FLAGS`` in a fresh interpreter, ready to answer."""
    port = free_port()
    argv = [sys.executable, "-m", "transferkit.cli.main", "serve", str(run_dir), "--port", str(port), *flags]
    server = ServerProcess(argv, port, log, env, key)
    server.wait_ready()
    return server
