"""Typed settings of ``transferkit serve``: one pydantic model whose field descriptions are the CLI's ``--help``.

Nothing here imports FastAPI or torch, so building the CLI parser stays cheap.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from transferkit.errors import ConfigError

API_KEYS_ENV = "TRANSFERKIT_API_KEYS"


class ServeSettings(BaseModel):
    """How the prediction service listens, batches, limits and authenticates.

    API keys are not a field: they come from ``$TRANSFERKIT_API_KEYS`` or ``api_key_file`` (see
    :func:`load_api_keys`) so that they never appear in a dump of the settings or in a log.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to bind; a non-loopback address requires API keys")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    workers: int = Field(1, ge=1, le=64, description="worker processes, each with its own copy of the model")
    max_batch_size: int = Field(32, ge=1, le=4096, description="most inputs gathered into one forward pass")
    max_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="longest wait for more requests before a batch runs (ms)"
    )
    max_queue: int = Field(
        512, ge=1, description="most inputs waiting for the model; past it requests get 503 + Retry-After"
    )
    max_inputs: int = Field(64, ge=1, description="most inputs in one request")
    max_text_chars: int = Field(20_000, ge=1, description="longest text (characters) accepted per input")
    max_image_bytes: int = Field(
        5 * 1024 * 1024, ge=1, description="largest encoded image (bytes) accepted per input"
    )
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="largest decoded image (width x height) accepted per input"
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1, description="largest request body (bytes)")
    request_timeout_s: float = Field(
        30.0, gt=0, description="a prediction not answered within this many seconds gets 504"
    )
    api_key_file: Path | None = Field(
        None, description=f"file of API keys, one per line (also read: ${API_KEYS_ENV}, comma-separated)"
    )
    no_auth_i_know: bool = Field(
        False, description="serve a non-loopback address without API keys (anyone who reaches it can use it)"
    )
    access_log: Path | None = Field(
        None, description="append JSON-lines access logs to this file (default: standard error)"
    )

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        if self.max_queue < self.max_inputs:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be at least max_inputs ({self.max_inputs}), "
                "or a full-size request could never be queued"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def load_api_keys(settings: ServeSettings) -> list[str]:
    """The accepted API keys: ``$TRANSFERKIT_API_KEYS`` (comma-separated) plus ``settings.api_key_file``.

    Raises:
        ConfigError: for an unreadable or empty key file, or a non-loopback host without keys (unless
            ``no_auth_i_know``).
    """
    keys = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
    if settings.api_key_file is not None:
        try:
            lines = Path(settings.api_key_file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ConfigError(
                f"--api-key-file {settings.api_key_file}: cannot read it ({err.strerror})"
            ) from None
        from_file = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not from_file:
            raise ConfigError(f"--api-key-file {settings.api_key_file}: holds no key (one key per line)")
        keys += from_file
    if not keys and not is_loopback(settings.host) and not settings.no_auth_i_know:
        raise ConfigError(
            f"--host {settings.host} is reachable from other machines, so API keys are required: set "
            f"${API_KEYS_ENV} or --api-key-file, or pass --no-auth-i-know to serve without them"
        )
    return keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per settings field, help text from its description (defaults left to the model)."""
    for name, field in ServeSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (default: {field.default})"
        if field.annotation is bool:
            parser.add_argument(flag, action="store_true", default=None, help=field.description)
        else:
            kind = {int: int, float: float}.get(field.annotation, str)
            parser.add_argument(flag, type=kind, default=None, help=help_text)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Builds the settings from parsed flags (unset flags keep the defaults).

    Raises:
        ConfigError: naming every bad flag.
    """
    given = {n: getattr(args, n) for n in ServeSettings.model_fields if getattr(args, n, None) is not None}
    try:
        return ServeSettings(**given)
    except ValidationError as err:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" if e["loc"] else e["msg"]
            for e in err.errors()
        )
        raise ConfigError(f"serve settings: {problems}") from None


__all__ = [
    "API_KEYS_ENV",
    "ServeSettings",
    "add_arguments",
    "is_loopback",
    "load_api_keys",
    "settings_from_args",
]
