"""Typed settings of ``transferkit serve``: one pydantic model whose field descriptions are the CLI's ``--help``.

Nothing here imports FastAPI or torch, so building the CLI parser stays cheap.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from transferkit.errors import ConfigError

API_KEYS_ENV = "TRANSFERKIT_API_KEYS"
ADMIN_KEYS_ENV = "TRANSFERKIT_ADMIN_KEYS"


class ServeSettings(BaseModel):
    """How the prediction service listens, batches, limits and authenticates.

    API keys are not a field: they come from ``$TRANSFERKIT_API_KEYS`` or ``api_key_file`` (see
    :func:`load_api_keys`), admin keys from ``$TRANSFERKIT_ADMIN_KEYS`` or ``admin_key_file`` (see
    :func:`load_admin_keys`), so that they never appear in a dump of the settings or in a log.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to bind; a non-loopback address requires API keys")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    workers: int = Field(1, ge=1, le=64, description="worker processes, each with its own copy of the model")
    max_batch_size: int = Field(32, ge=1, le=4096, description="most inputs gathered into one forward pass")
    # 0: a batch runs as soon as the model is free, with every request queued meanwhile (those that arrived
    # during the previous forward pass). Measured (MiniLM, bf16, 2-core Xeon): 0 ms vs 5 ms gave 49.8 vs 39.1
    # req/s at concurrency 1 (p50 19.7 vs 25.6 ms) and 150 vs 143 req/s at 16: waiting only added latency.
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="longest wait for more requests before a batch runs (ms); 0: run with what is queued",
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
    admin_key_file: Path | None = Field(
        None,
        description=f"file of admin keys, one per line (also read: ${ADMIN_KEYS_ENV}); without admin keys "
        "/admin/* is off (404)",
    )
    reload_root: Path | None = Field(
        None,
        description="POST /admin/reload loads only folders inside this one (after following symlinks), "
        "from a private copy read without following any (default: only the folder being served)",
    )
    reload_interval_s: float = Field(
        5.0, ge=0, description="least seconds between two POST /admin/reload (sooner: 429 + Retry-After)"
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host header values accepted, comma-separated ('*': any; default: loopback names when "
        "bound to loopback, any otherwise)",
    )
    limit_concurrency: int = Field(
        256, ge=1, description="most connections and requests in progress; past it new ones get 503"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="a request body not received within this many seconds gets 408"
    )
    max_queue_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1,
        description="most bytes of decoded images waiting for the model; past it requests get 503",
    )
    max_concurrent_decodes: int = Field(
        4, ge=1, description="most requests decoding images at the same time (the rest wait their turn)"
    )
    access_log: Path | None = Field(
        None, description="append JSON-lines access logs to this file (default: standard error)"
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads per worker (default: the cores this process may use divided by "
        "--workers, at least 1); the tokenizer runs single-threaded on the batching thread",
    )
    precision: Literal["auto", "run", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="forward-pass precision: auto (bf16 where this machine has native bf16, else fp32; "
        "`transferkit env` tells), run (what the run trained at), fp32, bf16, fp16 (CUDA); exported ONNX "
        "folders run as exported",
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):  # the CLI flag: comma-separated
            value = [h for h in (part.strip() for part in value.split(",")) if h]
        if isinstance(value, list):
            value = [h.strip().lower() for h in value if isinstance(h, str) and h.strip()] or None
        return value

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


def _read_keys(env: str, key_file: Path | None, flag: str) -> list[str]:
    """Keys from ``$env`` (comma-separated) plus ``key_file`` (one per line, ``#`` comments)."""
    keys = [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]
    if key_file is not None:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"{flag} {key_file}: cannot read it ({reason})") from None
        from_file = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not from_file:
            raise ConfigError(f"{flag} {key_file}: holds no key (one key per line)")
        keys += from_file
    return keys


def load_api_keys(settings: ServeSettings) -> list[str]:
    """The accepted API keys: ``$TRANSFERKIT_API_KEYS`` (comma-separated) plus ``settings.api_key_file``.

    Raises:
        ConfigError: for an unreadable or empty key file, or a non-loopback host without keys (unless
            ``no_auth_i_know``).
    """
    keys = _read_keys(API_KEYS_ENV, settings.api_key_file, "--api-key-file")
    if not keys and not is_loopback(settings.host) and not settings.no_auth_i_know:
        raise ConfigError(
            f"--host {settings.host} is reachable from other machines, so API keys are required: set "
            f"${API_KEYS_ENV} or --api-key-file, or pass --no-auth-i-know to serve without them"
        )
    return keys


def load_admin_keys(settings: ServeSettings, api_keys: list[str] = ()) -> list[str]:
    """The admin keys: ``$TRANSFERKIT_ADMIN_KEYS`` (comma-separated) plus ``settings.admin_key_file``.

    None means ``/admin/*`` is off. Admin keys open only ``/admin/*``, API keys never do.

    Raises:
        ConfigError: for an unreadable or empty key file, or an admin key that is also an API key.
    """
    keys = _read_keys(ADMIN_KEYS_ENV, settings.admin_key_file, "--admin-key-file")
    if set(keys) & set(api_keys):
        raise ConfigError(
            "an admin key is also an API key: admin keys must differ from the keys that only predict"
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
    "ADMIN_KEYS_ENV",
    "API_KEYS_ENV",
    "ServeSettings",
    "add_arguments",
    "is_loopback",
    "load_admin_keys",
    "load_api_keys",
    "settings_from_args",
]
