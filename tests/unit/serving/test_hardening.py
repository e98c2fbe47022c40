"""Hostile requests: every one answered 4xx with one line, never 5xx, never a path or a traceback; the admin
surface closed by default; the Host check; reload confined to its root; malformed bodies, lone surrogates,
disconnects, slow uploads, images of any format or size. See SECURITY.md for what these tests stand for."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from transferkit.serving import ServeSettings

API, ADM = "predict-key-0123456789", "admin-key-9876543210"
AUTH = {"Authorization": f"Bearer {API}"}
ADMIN = {"Authorization": f"Bearer {ADM}"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(size=(8, 8), color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def encoded(fmt: str, size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format=fmt)
    return buf.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims ``width x height`` pixels in a few dozen bytes (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(/etc/passwd) (r) file pop\nshowpage\n%%EOF\n"


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def multipart(parts: str, boundary: str = "xyz") -> dict:
    return {
        "content": parts.encode(),
        "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
    }


def raw_json(body: bytes) -> dict:
    return {"content": body, "headers": {"content-type": "application/json"}}


# (id, task, request keywords for client.request, expected status); predict requests carry the API key
# unless their headers say otherwise. Every one must be a 4xx: the old code answered several with 500.
TEXT, IMAGE = "text-classification", "image-classification"
P, R = "/v1/predict", "/admin/reload"
CASES = [
    # malformed or hostile JSON
    ("nested-top", TEXT, {"url": P, **raw_json(deep(20_000))}, 422),
    ("nested-inputs", TEXT, {"url": P, **raw_json(b'{"inputs": ' + deep(20_000) + b"}")}, 422),
    ("nested-shallow", TEXT, {"url": P, **raw_json(b'{"inputs": ' + deep(40) + b"}")}, 422),
    ("truncated-json", TEXT, {"url": P, **raw_json(b'{"inputs": ["a"')}, 422),
    ("empty-body", TEXT, {"url": P, **raw_json(b"")}, 422),
    ("null-body", TEXT, {"url": P, **raw_json(b"null")}, 422),
    ("string-body", TEXT, {"url": P, **raw_json(b'"just a text"')}, 422),
    ("huge-integer", TEXT, {"url": P, **raw_json(b'{"inputs": [' + b"7" * 6000 + b"]}")}, 422),
    ("nan", TEXT, {"url": P, **raw_json(b'{"inputs": NaN}')}, 422),
    ("invalid-utf8", TEXT, {"url": P, **raw_json(b'{"inputs": ["\xff\xfe\xfa"]}')}, 422),
    ("utf16-garbage", TEXT, {"url": P, **raw_json(b"\xff\xfe{\x00\xd8")}, 422),
    ("lone-high-surrogate", TEXT, {"url": P, **raw_json(b'{"inputs": ["a \\ud800 b"]}')}, 422),
    ("lone-low-surrogate", TEXT, {"url": P, **raw_json(b'{"inputs": ["\\udfff"]}')}, 422),
    ("surrogate-single", TEXT, {"url": P, **raw_json(b'{"inputs": "\\ud83d"}')}, 422),
    ("surrogate-key", TEXT, {"url": P, **raw_json(b'{"inputs": ["x"], "\\ud800": 1}')}, 422),
    (
        "many-unknown-fields",
        TEXT,
        {"url": P, "json": {"inputs": ["x"], **{"f" * 500 + str(i): i for i in range(50)}}},
        422,
    ),  # fmt: skip
    # wrong types
    ("inputs-bool", TEXT, {"url": P, "json": {"inputs": True}}, 422),
    ("inputs-number", TEXT, {"url": P, "json": {"inputs": 3.5}}, 422),
    ("inputs-objects", TEXT, {"url": P, "json": {"inputs": [{"text": "x"}]}}, 422),
    ("inputs-lists", TEXT, {"url": P, "json": {"inputs": [["a", "b"]]}}, 422),
    ("inputs-null-items", TEXT, {"url": P, "json": {"inputs": [None]}}, 422),
    # wrong content types and transports
    (
        "text-plain",
        TEXT,
        {"url": P, "content": b'{"inputs": ["x"]}', "headers": {"content-type": "text/plain"}},
        415,
    ),  # fmt: skip
    ("form-urlencoded", TEXT, {"url": P, "data": {"inputs": "x"}}, 415),
    ("no-content-type", TEXT, {"url": P, "content": b'{"inputs": ["x"]}'}, 415),
    ("xml", TEXT, {"url": P, "content": b"<inputs/>", "headers": {"content-type": "application/xml"}}, 415),
    (
        "multipart-no-boundary",
        TEXT,
        {"url": P, "content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
        422,
    ),  # fmt: skip
    (
        "multipart-garbage",
        TEXT,
        multipart("--xyz\r\nContent-Disposition: nope\r\n\r\n\r\n--xyz--\r\n") | {"url": P},
        422,
    ),  # fmt: skip
    ("multipart-wrong-boundary", TEXT, multipart("--abc\r\n\r\nx\r\n--abc--\r\n") | {"url": P}, 422),
    ("multipart-file-to-text", TEXT, {"url": P, "files": {"inputs": ("a.png", png(), "image/png")}}, 422),
    ("body-too-large", TEXT, {"url": P, **raw_json(b'{"inputs": ["' + b"x" * 70_000 + b'"]}')}, 413),
    ("get-predict", TEXT, {"method": "GET", "url": P}, 405),
    # keys
    ("missing-key", TEXT, {"url": P, "json": {"inputs": ["x"]}, "headers": {"Authorization": ""}}, 401),
    (
        "wrong-key",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": {"Authorization": "Bearer nope"}},
        401,
    ),
    (
        "basic-auth",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": {"Authorization": "Basic YTpi"}},
        401,
    ),
    ("admin-key-predicts", TEXT, {"url": P, "json": {"inputs": ["x"]}, "headers": ADMIN}, 401),
    (
        "non-ascii-key",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": {"Authorization": b"Bearer \xe9\xff"}},
        401,
    ),  # fmt: skip
    # admin
    ("reload-no-key", TEXT, {"url": R, "json": {}, "headers": {"Authorization": ""}}, 401),
    ("reload-predict-key", TEXT, {"url": R, "json": {}, "headers": AUTH}, 401),
    ("reload-wrong-key", TEXT, {"url": R, "json": {}, "headers": {"Authorization": "Bearer x"}}, 401),
    (
        "reload-text-plain",
        TEXT,
        {"url": R, "content": b'{"run": "x"}', "headers": ADMIN | {"content-type": "text/plain"}},
        415,
    ),  # fmt: skip
    ("reload-form", TEXT, {"url": R, "data": {"run": "/"}, "headers": ADMIN}, 415),
    (
        "reload-multipart",
        TEXT,
        {"url": R, "files": {"run": ("r", b"/", "text/plain")}, "headers": ADMIN},
        415,
    ),
    ("reload-no-content-type", TEXT, {"url": R, "headers": ADMIN}, 415),
    ("reload-absolute-outside", TEXT, {"url": R, "json": {"run": "/etc"}, "headers": ADMIN}, 403),
    ("reload-dotdot", TEXT, {"url": R, "json": {"run": "../outside"}, "headers": ADMIN}, 403),
    ("reload-symlink-escape", TEXT, {"url": R, "json": {"run": "escape"}, "headers": ADMIN}, 403),
    ("reload-symlink-absolute", TEXT, {"url": R, "json": {"run": "<run>/escape"}, "headers": ADMIN}, 403),
    ("reload-nul", TEXT, {"url": R, "json": {"run": "a\x00b"}, "headers": ADMIN}, 403),
    ("reload-empty-name", TEXT, {"url": R, "json": {"run": " "}, "headers": ADMIN}, 403),
    ("reload-missing-inside", TEXT, {"url": R, "json": {"run": "no-such-sub"}, "headers": ADMIN}, 404),
    (
        "reload-nested-json",
        TEXT,
        {"url": R, **raw_json(deep(20_000)), "headers": ADMIN | {"content-type": "application/json"}},
        422,
    ),  # fmt: skip
    ("reload-run-number", TEXT, {"url": R, "json": {"run": 3}, "headers": ADMIN}, 422),
    ("reload-extra-field", TEXT, {"url": R, "json": {"run": "x", "loader": "y"}, "headers": ADMIN}, 422),
    ("reload-get", TEXT, {"method": "GET", "url": R, "headers": ADMIN}, 405),
    ("admin-other-path", TEXT, {"method": "GET", "url": "/admin/../admin/config", "headers": ADMIN}, 404),
    # Host header attacks (DNS rebinding): the server is bound to loopback
    (
        "host-evil",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": AUTH | {"host": "evil.example"}},
        400,
    ),  # fmt: skip
    (
        "host-evil-port",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": AUTH | {"host": "evil.example:8000"}},
        400,
    ),  # fmt: skip
    (
        "host-loopback-prefix",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": AUTH | {"host": "127.0.0.1.evil.example"}},
        400,
    ),  # fmt: skip
    (
        "host-localhost-prefix",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": AUTH | {"host": "localhost.evil.example"}},
        400,
    ),  # fmt: skip
    (
        "host-userinfo",
        TEXT,
        {"url": P, "json": {"inputs": ["x"]}, "headers": AUTH | {"host": "localhost@evil.example"}},
        400,
    ),  # fmt: skip
    ("host-empty", TEXT, {"url": P, "json": {"inputs": ["x"]}, "headers": AUTH | {"host": ""}}, 400),
    ("host-reload", TEXT, {"url": R, "json": {}, "headers": ADMIN | {"host": "evil.example"}}, 400),
    # images
    ("image-bad-base64", IMAGE, {"url": P, "json": {"inputs": ["@@not base64@@"]}}, 422),
    ("image-surrogate-base64", IMAGE, {"url": P, **raw_json(b'{"inputs": ["iVBO\\ud800"]}')}, 422),
    ("image-not-an-image", IMAGE, {"url": P, "json": {"inputs": [b64(b"hello world")]}}, 422),
    ("image-truncated-png", IMAGE, {"url": P, "json": {"inputs": [b64(png((64, 64))[:60])]}}, 422),
    (
        "image-truncated-jpeg",
        IMAGE,
        {"url": P, "json": {"inputs": [b64(encoded("JPEG", (64, 64))[:200])]}},
        422,
    ),  # fmt: skip
    ("image-bomb", IMAGE, {"url": P, "json": {"inputs": [b64(png_bomb())]}}, 422),
    ("image-bomb-wide", IMAGE, {"url": P, "json": {"inputs": [b64(png_bomb(2**31 - 1, 1))]}}, 422),
    ("image-eps", IMAGE, {"url": P, "json": {"inputs": [b64(EPS)]}}, 422),
    (
        "image-eps-upload",
        IMAGE,
        {"url": P, "files": {"inputs": ("x.eps", EPS, "application/postscript")}},
        422,
    ),  # fmt: skip
    ("image-ico", IMAGE, {"url": P, "json": {"inputs": [b64(encoded("ICO", (16, 16)))]}}, 422),
    ("image-pcx", IMAGE, {"url": P, "json": {"inputs": [b64(encoded("PCX"))]}}, 422),
    ("image-too-many-bytes", IMAGE, {"url": P, "json": {"inputs": [b64(b"\x89PNG" + b"0" * 40_000)]}}, 422),
    ("image-too-many-pixels", IMAGE, {"url": P, "json": {"inputs": [b64(png((400, 400)))]}}, 422),
    ("image-number", IMAGE, {"url": P, "json": {"inputs": [12]}}, 422),
    ("image-data-url-junk", IMAGE, {"url": P, "json": {"inputs": ["data:image/png;base64,!!!"]}}, 422),
    (
        "image-upload-garbage",
        IMAGE,
        {"url": P, "files": {"inputs": ("x.png", b"\x89PNG\r\n\x1a\n", "image/png")}},
        422,
    ),  # fmt: skip
    (
        "image-second-bad",
        IMAGE,
        {"url": P, "json": {"inputs": [b64(png()), b64(b"GIF89a" + b"\0" * 20)]}},
        422,
    ),  # fmt: skip
]
assert len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture
def hostile(fake_client, fake_run: Path):
    """``make(task) -> client`` with API and admin keys, small limits, and a symlink out of the run."""
    outside = fake_run.parent / "outside"
    outside.mkdir(exist_ok=True)
    (fake_run / "escape").symlink_to(outside, target_is_directory=True)
    settings = ServeSettings(max_body_bytes=64_000, max_image_bytes=30_000, max_image_pixels=100_000)

    def make(task: str):
        client, loader = fake_client(task, settings=settings, api_keys=[API], admin_keys=[ADM])
        return client, loader

    return make


@pytest.mark.parametrize(("task", "request_kw", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_request_is_a_clear_4xx(hostile, fake_run: Path, task: str, request_kw: dict, status: int):
    client, loader = hostile(task)
    kw = dict(request_kw)
    kw["headers"] = AUTH | kw.get("headers", {})  # the API key unless the case sends another
    if isinstance(kw.get("json"), dict) and "<run>" in str(kw["json"].get("run", "")):
        kw["json"] = {"run": kw["json"]["run"].replace("<run>", str(fake_run))}
    r = client.request(kw.pop("method", "POST"), kw.pop("url"), **kw)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 400
    assert str(fake_run.parent) not in r.text and "Traceback" not in r.text
    assert len(loader.loaded) == 1  # no reload happened ...
    assert len(loader.loaded[0].batches) == 1  # ... and only the warm-up reached the model


def test_admin_is_off_without_admin_keys_even_on_loopback(fake_client) -> None:
    client, loader = fake_client(api_keys=[])  # loopback, no keys at all: the old code reloaded
    r = client.post(R, json={})
    assert r.status_code == 404 and "admin endpoints are off" in r.json()["detail"]
    assert client.post(R, json={"run": "/"}, headers=ADMIN).status_code == 404
    assert len(loader.loaded) == 1
    assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


def test_reload_with_admin_key_and_sibling_under_reload_root(fake_client, fake_run: Path) -> None:
    sibling = fake_run.parent / "next-run"
    sibling.mkdir()
    settings = ServeSettings(reload_root=fake_run.parent, reload_interval_s=0)
    client, loader = fake_client(settings=settings, admin_keys=[ADM])
    r = client.post(R, json={"run": "next-run"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["run"] == "next-run" and str(fake_run.parent) not in r.text
    assert client.app.state.slot.current.run_dir == sibling.resolve()
    assert loader.loaded[-1].run_dir.name == "next-run"  # read from a private copy (test_reload_race.py)
    r = client.post(R, json={"run": str(sibling)}, headers=ADMIN)  # absolute, inside the root
    assert r.status_code == 200
    assert client.post(R, json={"run": "/tmp"}, headers=ADMIN).status_code == 403
    assert client.post(R, json={}, headers=ADMIN).status_code == 200  # the served folder again


def test_reload_failure_names_no_path_and_no_exception(fake_client, fake_run: Path) -> None:
    (fake_run.parent / "broken").mkdir()
    client, _ = fake_client(settings=ServeSettings(reload_root=fake_run.parent), admin_keys=[ADM])
    slot = client.app.state.slot
    working = slot.loader

    def loader(run_dir):
        if Path(run_dir).name == "broken":
            raise ValueError(f"cannot parse {run_dir}/model.safetensors: secret-detail")
        return working(run_dir)

    slot.loader = loader
    r = client.post(R, json={"run": "broken"}, headers=ADMIN)
    assert r.status_code == 422 and "cannot be loaded" in r.json()["detail"]
    assert "secret-detail" not in r.text and "broken" not in r.text and "safetensors" not in r.text
    assert client.post(P, json={"inputs": ["still served"]}).status_code == 200


def test_reloads_are_rate_limited(fake_client) -> None:
    client, loader = fake_client(settings=ServeSettings(reload_interval_s=60), admin_keys=[ADM])
    assert client.post(R, json={}, headers=ADMIN).status_code == 200
    r = client.post(R, json={}, headers=ADMIN)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 59
    assert len(loader.loaded) == 2  # the first load and one reload, not a third


def test_admin_keys_come_from_env_and_file_and_differ_from_api_keys(
    fake_client, tmp_path, monkeypatch
) -> None:
    from transferkit.errors import ConfigError
    from transferkit.serving.settings import load_admin_keys

    monkeypatch.setenv("TRANSFERKIT_ADMIN_KEYS", "a1, a2")
    keyfile = tmp_path / "admin-keys"
    keyfile.write_text("# admins\na3\n")
    assert load_admin_keys(ServeSettings(admin_key_file=keyfile)) == ["a1", "a2", "a3"]
    with pytest.raises(ConfigError, match="admin key is also an API key"):
        load_admin_keys(ServeSettings(), api_keys=["a2"])
    with pytest.raises(ConfigError, match="admin key is also an API key"):
        fake_client(api_keys=["k"], admin_keys=["k"])
    monkeypatch.delenv("TRANSFERKIT_ADMIN_KEYS")
    assert load_admin_keys(ServeSettings()) == []


@pytest.mark.parametrize(
    ("host", "settings", "status"),
    [
        ("localhost:8000", {}, 200),
        ("LOCALHOST", {}, 200),
        ("127.0.0.1", {}, 200),
        ("127.0.0.1:8000", {}, 200),
        ("127.8.9.10", {}, 200),
        ("[::1]:8000", {}, 200),
        ("testserver", {}, 200),  # the address the connection arrived at (scope["server"])
        ("api.example.org", {}, 400),
        ("api.example.org", {"allowed_hosts": "api.example.org,other.example"}, 200),
        ("evil.example", {"allowed_hosts": "api.example.org"}, 400),
        ("127.0.0.1", {"allowed_hosts": "api.example.org"}, 200),
        ("anything.example", {"allowed_hosts": "*"}, 200),
        ("anything.example", {"host": "0.0.0.0", "no_auth_i_know": True}, 200),
        ("evil.example", {"host": "0.0.0.0", "no_auth_i_know": True, "allowed_hosts": "a.example"}, 400),
    ],
)
def test_trusted_hosts(fake_client, host: str, settings: dict, status: int) -> None:
    client, _ = fake_client(settings=ServeSettings(**settings))
    assert client.get("/healthz", headers={"host": host}).status_code == status
    r = client.post(P, json={"inputs": ["x"]}, headers={"host": host})
    assert r.status_code == status
    if status == 400:
        assert "Host header not allowed" in r.json()["detail"]
        assert 'status="400"' in client.get("/metrics").text  # refusals are counted


def test_plots_that_link_out_of_the_run_are_not_served(fake_client, fake_run: Path) -> None:
    secret = fake_run.parent / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    (fake_run / "confusion_matrix.png").symlink_to(secret)
    client, _ = fake_client()
    assert client.get("/v1/model/confusion_matrix.png").status_code == 404


def test_the_plot_is_read_with_the_model_so_a_later_swap_serves_nothing_else(
    fake_client, fake_run: Path
) -> None:
    """/v1/model/confusion_matrix.png answers the bytes read at load time: swapping the file for a link out
    of the run afterwards (or deleting it) changes nothing served until the next reload."""
    (fake_run / "confusion_matrix.png").write_bytes(b"\x89PNG the run's own")
    secret = fake_run.parent / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    client, _ = fake_client()
    (fake_run / "confusion_matrix.png").unlink()
    (fake_run / "confusion_matrix.png").symlink_to(secret)
    r = client.get("/v1/model/confusion_matrix.png")
    assert r.status_code == 200 and r.content == b"\x89PNG the run's own"
    assert r.headers["content-type"] == "image/png"


def test_an_oversized_plot_is_not_served(fake_client, fake_run: Path, monkeypatch) -> None:
    import transferkit.serving.model as served

    monkeypatch.setattr(served, "MAX_PLOT_BYTES", 16)
    (fake_run / "confusion_matrix.png").write_bytes(b"\x89PNG" + b"x" * 64)
    client, _ = fake_client()
    assert client.get("/v1/model/confusion_matrix.png").status_code == 404


def test_run_config_that_links_out_of_the_run_is_not_read(fake_run: Path) -> None:
    from types import SimpleNamespace

    from transferkit.serving.model import run_info

    outside = fake_run.parent / "other.yaml"
    outside.write_text("backbone: {name: leaked}\n")
    (fake_run / "config.yaml").symlink_to(outside)
    assert run_info(fake_run, SimpleNamespace())["backbone"] is None
    (fake_run / "config.yaml").unlink()
    (fake_run / "config.yaml").write_text("backbone: just-a-string\nstrategy: [1]\n")  # malformed: no crash
    assert run_info(fake_run, SimpleNamespace()) == {"backbone": None, "strategy": None}


def test_lone_surrogates_never_reach_the_model(fake_client) -> None:
    client, loader = fake_client(fail_on=None)
    for body in (b'{"inputs": ["ok", "\\ud800"]}', b'{"inputs": ["\\udc00 tail"]}'):
        r = client.post(P, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "lone surrogate" in r.json()["detail"]
    assert loader.loaded[0].batches == [["transferkit warm-up"]]
    r = client.post(P, json={"inputs": ["emoji 😀 and accents éà"]})  # valid pairs pass
    assert r.status_code == 200


def test_metrics_method_label_is_a_fixed_set(fake_client) -> None:
    client, _ = fake_client()
    for method in ("BREW", "PROPFIND", "X" * 40):
        client.request(method, "/healthz")
    text = client.get("/metrics").text
    assert 'method="other"' in text
    assert "BREW" not in text and "PROPFIND" not in text and "XXXX" not in text


def test_request_ids_are_echoed_only_when_plain(fake_client) -> None:
    client, _ = fake_client()
    assert client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    echoed = client.get("/healthz", headers={"x-request-id": 'a b"c{}'}).headers["x-request-id"]
    assert echoed != 'a b"c{}' and len(echoed) == 16


def test_uvicorn_gets_the_concurrency_limit() -> None:
    from transferkit.serving.server import uvicorn_options

    opts = uvicorn_options(ServeSettings(limit_concurrency=7))
    assert opts["limit_concurrency"] == 7 and opts["server_header"] is False


def test_serve_flags_for_the_new_settings() -> None:
    from transferkit.cli.main import build_parser
    from transferkit.serving.settings import settings_from_args

    args = build_parser().parse_args(
        ["serve", "RUN", "--reload-root", "/srv/runs", "--allowed-hosts", "a.example, B.example",
         "--admin-key-file", "/k", "--limit-concurrency", "9", "--body-timeout-s", "2.5"]
    )  # fmt: skip
    s = settings_from_args(args)
    assert s.reload_root == Path("/srv/runs") and s.allowed_hosts == ["a.example", "b.example"]
    assert (s.limit_concurrency, s.body_timeout_s, s.admin_key_file) == (9, 2.5, Path("/k"))


def asgi_post(client, chunks: list[bytes], *, gap_s: float = 0.0, leave_after_s: float | None = None):
    """A raw ASGI ``POST /v1/predict`` on the client's running app: ``chunks`` of the body ``gap_s`` apart;
    with ``leave_after_s`` the client disconnects that long after its body. Returns (status, body)."""
    import asyncio

    async def call():
        pending, sent = list(chunks), []

        async def receive():
            if pending:
                if gap_s:
                    await asyncio.sleep(gap_s)
                chunk = pending.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
            await asyncio.sleep(3600 if leave_after_s is None else leave_after_s)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": P, "raw_path": P.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip
        await client.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        return start["status"], b"".join(
            m.get("body", b"") for m in sent if m["type"] == "http.response.body"
        )

    return call


def test_a_client_that_disconnects_has_its_queued_work_cancelled(fake_client) -> None:
    import asyncio

    settings = ServeSettings(max_batch_size=1, max_wait_ms=0)
    client, loader = fake_client(settings=settings, delay=0.4)

    async def both():
        first = asyncio.ensure_future(asgi_post(client, [b'{"inputs": ["first"]}'])())
        await asyncio.sleep(0.1)  # "first" is in the forward pass; "second" waits in the queue ...
        second = await asgi_post(client, [b'{"inputs": ["second"]}'], leave_after_s=0.05)()
        return await first, second

    (status1, _), (status2, _) = client.portal.call(both)
    assert status1 == 200 and status2 == 499
    time.sleep(0.5)  # ... and leaves: the batcher must skip it
    assert ["second"] not in loader.loaded[0].batches
    assert 'transferkit_rejected_total{reason="disconnected"} 1.0' in client.get("/metrics").text


def test_a_slow_upload_gets_408(fake_client) -> None:
    client, loader = fake_client(settings=ServeSettings(body_timeout_s=0.2))
    status, body = client.portal.call(asgi_post(client, [b'{"inputs": ', b'["x"]}'], gap_s=0.3))
    assert status == 408 and b"--body-timeout-s" in body
    status, _ = client.portal.call(asgi_post(client, [b'{"inputs": ', b'["x"]}'], gap_s=0.01))
    assert status == 200
