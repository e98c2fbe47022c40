"""Serve settings: one CLI flag per typed field, validation with the flag's name, loopback detection."""

from __future__ import annotations

import argparse

import pytest

from transferkit.cli.main import build_parser, main
from transferkit.errors import ConfigError
from transferkit.serving.settings import ServeSettings, add_arguments, is_loopback, settings_from_args


def test_every_field_is_a_flag_with_its_description() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    for name, field in ServeSettings.model_fields.items():
        assert "--" + name.replace("_", "-") in help_text
        assert " ".join(field.description.split()) in help_text


def test_flags_become_settings() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "RUN",
            "--port",
            "9000",
            "--max-batch-size",
            "8",
            "--max-wait-ms",
            "2.5",
            "--no-auth-i-know",
        ]
    )
    s = settings_from_args(args)
    assert (s.port, s.max_batch_size, s.max_wait_ms, s.no_auth_i_know) == (9000, 8, 2.5, True)
    assert s.host == "127.0.0.1" and s.workers == 1  # untouched flags keep the defaults


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-batch-size", "0"], "--max-batch-size"),
        (["--workers", "0"], "--workers"),
        (["--max-queue", "4", "--max-inputs", "8"], "max_queue (4) must be at least max_inputs (8)"),
    ],
)
def test_bad_settings_name_the_flag(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["serve", "RUN", *argv])
    with pytest.raises(ConfigError, match="serve settings") as err:
        settings_from_args(args)
    assert message in str(err.value)


def test_cli_reports_bad_settings_in_one_line(capsys) -> None:
    assert main(["serve", "RUN", "--max-wait-ms", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: serve settings: --max-wait-ms") and "\n" not in err


def test_cli_reports_a_missing_run(tmp_path, capsys) -> None:
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("192.168.1.4", False), ("::", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
