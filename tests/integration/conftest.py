"""Fixtures of the integration tests: the tiny run and a live ``transferkit serve`` process."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import serve_cli


@pytest.fixture(scope="session")
def served_run(tiny_run) -> Path:
    """The session's tiny text-classification run (tiny-bert fine-tuned on the toy CSV)."""
    return Path(tiny_run.run_dir)


LIVE_KEYS = ("key-from-file-123", "env-key-456")
ADMIN_KEY = "admin-key-789"


@pytest.fixture(scope="session")
def live_keys() -> tuple[str, str]:
    """The live server's API keys: (from the key file, from the environment)."""
    return LIVE_KEYS


@pytest.fixture(scope="session")
def admin_key() -> str:
    """The live server's admin key (``$TRANSFERKIT_ADMIN_KEYS``): API keys do not open ``/admin/*``."""
    return ADMIN_KEY


@pytest.fixture(scope="session")
def live_server(served_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """``transferkit serve`` on the tiny run (one process for the session: starting one costs seconds of
    imports), with one API key from a key file and one from ``$TRANSFERKIT_API_KEYS``."""
    folder = tmp_path_factory.mktemp("session-serve")
    keyfile = folder / "keys"
    keyfile.write_text(f"# test keys\n{LIVE_KEYS[0]}\n")
    flags = [
        "--max-wait-ms",
        "20",
        "--max-inputs",
        "16",
        "--max-text-chars",
        "2000",
        "--max-body-bytes",
        "400000",
        "--api-key-file",
        str(keyfile),
        "--reload-interval-s",
        "0",
    ]
    env = {"TRANSFERKIT_API_KEYS": LIVE_KEYS[1], "TRANSFERKIT_ADMIN_KEYS": ADMIN_KEY}
    server = serve_cli(served_run, folder / "server.log", *flags, env=env, key=LIVE_KEYS[0])
    yield server
    server.stop()
