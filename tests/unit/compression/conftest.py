"""Fixtures of the compression tests: folders derived once from the shared tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX export of ``tiny_run``."""
    from transferkit.compression import export_run

    return export_run(tiny_run.run_dir, tmp_path_factory.mktemp("session-export") / "tiny-onnx")


@pytest.fixture(scope="session")
def int8_result(tiny_run, tmp_path_factory: pytest.TempPathFactory):
    """``compress --int8`` of ``tiny_run`` (measured on its test split)."""
    from transferkit.compression import compress_run

    return compress_run(
        tiny_run.run_dir, int8=True, output=tmp_path_factory.mktemp("session-int8") / "int8", repeats=2
    )
