"""The declared lower bounds of the serving stack are versions that have the APIs transferkit calls.

A user on the floors otherwise gets a TypeError at ``transferkit serve --workers`` or a 500 on a multipart
request. The fast tests check that pyproject.toml's floors are at least the first release of each API (the
table below says which and why); the slow one installs exactly the floors of fastapi, starlette, uvicorn
and python-multipart from the package index into a folder put first on ``PYTHONPATH`` and runs the serving
tests against them (every other package from the current environment). It skips, saying so, when pip
cannot reach the index.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> (first release with what transferkit.serving uses, what that is)
REQUIRED = {
    # 0.40 to 0.43 have max_part_size only as a class attribute: the keyword is a TypeError (a 500)
    "starlette": ("0.44.0", "starlette.formparsers.MultiPartParser(max_part_size=) (serving/body.py)"),
    "fastapi": ("0.115.7", "the first fastapi that allows starlette>=0.44"),
    "uvicorn": (
        "0.51.0",
        "--workers: restart_all starts each successor and waits until it is ready before retiring the old "
        "worker (timeout_worker_healthcheck exists since 0.37, the roll since 0.51)",
    ),
    "python-multipart": ("0.0.18", "the multipart parser starlette imports"),
}
# pip's words when it could not reach the index (rather than a floor that does not exist)
NO_INDEX = re.compile(
    r"NewConnectionError|Failed to establish|Temporary failure in name resolution|Network is unreachable|"
    r"Max retries exceeded|ConnectTimeout|ReadTimeout|ProxyError|SSLError|Name or service not known"
)


def _version(text: str) -> tuple[int, ...]:
    """``"0.44"`` -> ``(0, 44, 0)``: release numbers padded to three, so ``0.44 == 0.44.0``."""
    parts = [int(part) for part in re.findall(r"\d+", text)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def declared_floors() -> dict[str, str]:
    """``{name: floor}`` of every ``name>=floor`` in ``[project].dependencies`` of pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    return {m[1].lower(): m[2] for m in re.finditer(r'"([A-Za-z0-9_.-]+)>=([0-9][^",;]*)"', block)}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_declared_floor_has_the_api(name: str) -> None:
    floors = declared_floors()
    assert name in floors, f"pyproject.toml declares no floor for {name} (transferkit.serving imports it)"
    needed, why = REQUIRED[name]
    assert _version(floors[name]) >= _version(needed), f"{name}>={floors[name]} is below {needed}: {why}"


def test_installed_versions_have_the_apis() -> None:
    """What the serving code calls exists in this environment (keyword names as transferkit passes them)."""
    import inspect

    import uvicorn
    from starlette.formparsers import MultiPartParser
    from uvicorn.supervisors.multiprocess import Multiprocess

    assert "max_part_size" in inspect.signature(MultiPartParser).parameters
    assert "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters
    assert "wait_until_ready" in inspect.getsource(Multiprocess.restart_all)


def _pip_install_floors(target: Path) -> None:
    floors = declared_floors()
    pins = [f"{name}=={floors[name]}" for name in sorted(REQUIRED)]
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
           "--timeout", "30", "--retries", "1", "--target", str(target), *pins]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not install the floors within 10 minutes (no package index reachable?)")
    if done.returncode != 0:
        output = done.stdout + done.stderr
        last = (output.strip().splitlines() or ["(no output)"])[-1]
        if NO_INDEX.search(output):
            pytest.skip(f"pip cannot reach the package index to install {' '.join(pins)}: {last}")
        pytest.fail(f"pip could not install the declared floors {' '.join(pins)}: {last}")


@pytest.mark.slow
def test_serving_tests_pass_on_the_floors(tmp_path: Path) -> None:
    site = tmp_path / "floors"
    _pip_install_floors(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    floors = declared_floors()
    probe = "import fastapi, starlette, uvicorn; print(fastapi.__version__, starlette.__version__, uvicorn.__version__)"
    seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    versions = [_version(v) for v in seen.stdout.split()]
    assert versions == [_version(floors[n]) for n in ("fastapi", "starlette", "uvicorn")], seen.stdout
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
         str(ROOT / "tests" / "unit" / "serving")],
        env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT,
    )  # fmt: skip
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
    assert done.returncode == 0, f"the serving tests fail on the declared floors:\n{tail}"
