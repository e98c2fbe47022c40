"""What the server trusts: the Host header, bearer keys, folders a reload may load, paths inside a run.

Each check answers a refusal that names no file path and repeats no exception text, so a caller learns
nothing about the machine's file system from it. SECURITY.md lists what these checks promise.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
import time
from pathlib import Path

from fastapi import HTTPException, Request

from transferkit.serving.settings import ServeSettings, is_loopback

# a Host header: a name or IPv4 (letters, digits, dots, dashes) or a bracketed IPv6, then an optional port
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?$")


def host_name(header: str) -> str | None:
    """The host part of a ``Host`` header, lower-cased and without the port; None when malformed."""
    match = _HOST.match(header.strip().lower())
    if match is None:
        return None
    return match.group("v6") or match.group("name")


def allowed_host_names(settings: ServeSettings) -> set[str] | None:
    """Accepted ``Host`` names (None: any). Default: loopback names when bound to loopback, so a web page
    whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused."""
    if settings.allowed_hosts is not None:
        return None if "*" in settings.allowed_hosts else set(settings.allowed_hosts)
    return {"localhost"} if is_loopback(settings.host) else None


class HostGuard:
    """Pure ASGI middleware: 400 for a request whose ``Host`` is not allowed.

    A loopback IP literal is always accepted (no DNS name can stand for it), and so is the address the
    connection arrived at as the ASGI server reports it (``scope["server"]``: taken from the socket, never
    from the request).
    """

    def __init__(self, app, allowed: set[str] | None):
        self.app = app
        self.allowed = allowed

    def accepts(self, scope) -> bool:
        if self.allowed is None:
            return True
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        name = host_name(raw)
        if name is None:
            return False
        if name in self.allowed:
            return True
        server = scope.get("server") or ("", 0)
        if name == str(server[0]).lower():
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.accepts(scope):
            return await self.app(scope, receive, send)
        body = json.dumps(
            {"detail": "Host header not allowed: use a loopback address or a name in --allowed-hosts"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BearerKeys:
    """Checks ``Authorization: Bearer <key>`` against a set of keys, in constant time per key."""

    def __init__(self, keys: list[str], kind: str = "API"):
        self.keys = [k.encode() for k in keys]
        self.kind = kind

    def __bool__(self) -> bool:
        return bool(self.keys)

    def check(self, request: Request) -> None:
        """Raises HTTP 401 unless the request carries one of the keys."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401, f"missing {self.kind} key: send the header 'Authorization: Bearer <key>'", challenge
            )
        token_bytes = token.strip().encode("utf-8", "replace")
        # compare with every key (constant time each) so timing tells nothing about which matched
        if not any([hmac.compare_digest(token_bytes, k) for k in self.keys]):
            raise HTTPException(401, f"invalid {self.kind} key", challenge)


class NotAllowed(Exception):
    """A folder outside the reload root (the message names no path)."""


def _real(path: Path) -> Path:
    # resolve every symlink of the existing part; strict=False so a missing folder still gets a real path
    return Path(os.path.realpath(path))


def inside(base: str | Path, path: str | Path) -> bool:
    """Whether ``path`` is ``base`` or lies under it once both are resolved (symlinks followed)."""
    real_base, real = _real(Path(base)), _real(Path(base) / path)
    return real == real_base or real_base in real.parents


def file_inside(base: str | Path, name: str) -> Path | None:
    """``base/name`` resolved, if it is a file inside ``base`` (a symlink out of the folder is not)."""
    if not inside(base, name):
        return None
    path = _real(Path(base) / name)
    return path if path.is_file() else None


def reload_target(run: str, root: Path) -> Path:
    """The resolved folder ``run`` names, relative paths taken from ``root``.

    Raises:
        NotAllowed: if it is not ``root`` or inside it after symlinks are followed.
    """
    if not run.strip() or "\x00" in run:
        raise NotAllowed("that folder is not allowed")
    real_root = _real(root)
    target = _real(real_root / run)  # an absolute ``run`` replaces the root in the join
    if target != real_root and real_root not in target.parents:
        raise NotAllowed("that folder is not allowed")
    return target


class RateLimit:
    """At most one event per ``interval`` seconds (monotonic clock)."""

    def __init__(self, interval: float):
        self.interval = interval
        self._last: float | None = None

    def wait_needed(self) -> float:
        """0 and the event is counted, or the seconds left before the next one is allowed."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            return self.interval - (now - self._last)
        self._last = now
        return 0.0


__all__ = [
    "BearerKeys",
    "HostGuard",
    "NotAllowed",
    "RateLimit",
    "allowed_host_names",
    "file_inside",
    "host_name",
    "inside",
    "reload_target",
]
