"""The app in process (TestClient) on the session's tiny text-classification run: every endpoint, every
refusal with its status and message, auth, reload, queue limits and timeouts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import transferkit
from transferkit.errors import ConfigError
from transferkit.serving import ServeSettings, create_app

ADMIN_KEY = "admin-key-for-tests-0123"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def client(served_run: Path):
    settings = ServeSettings(max_inputs=8, max_text_chars=500, max_body_bytes=4096, reload_interval_s=0)
    with TestClient(create_app(served_run, settings, admin_keys=[ADMIN_KEY])) as c:
        yield c


def test_predictions_match_the_library_in_input_order(client: TestClient, served_run: Path) -> None:
    texts = ["a great and wonderful film", "boring and dreadful", "the plot", "superb actor"]
    r = client.post("/v1/predict", json={"inputs": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = transferkit.load(served_run).predict(texts)
    assert [p["label"] for p in body["predictions"]] == [e["label"] for e in expected]
    for got, want in zip(body["predictions"], expected, strict=True):
        assert set(got["scores"]) == {"neg", "pos"}
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert sum(got["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["model_version"].startswith(served_run.name)


def test_single_input(client: TestClient) -> None:
    one = client.post("/v1/predict", json={"inputs": "superb"}).json()["predictions"]
    many = client.post("/v1/predict", json={"inputs": ["superb"]}).json()["predictions"]
    assert len(one) == 1 and one == many


def test_multipart_text_fields(client: TestClient) -> None:
    boundary = "b0undary"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="inputs"\r\n\r\n{text}\r\n'
        for text in ("superb", "awful")
    )
    body = (parts + f"--{boundary}--\r\n").encode()
    r = client.post(
        "/v1/predict", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2


def test_health_ready_model(client: TestClient, served_run: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    card = client.get("/v1/model").json()
    assert card["task"] == "text-classification" and card["labels"] == ["neg", "pos"]
    assert card["backbone"] == "tiny-bert" and card["strategy"] == "full"
    assert (
        card["metrics"]["test"]["accuracy"]
        == json.loads((served_run / "metrics.json").read_text())["test"]["accuracy"]
    )
    assert card["version"] == f"{served_run.name}#1"
    png = client.get("/v1/model/confusion_matrix.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_metrics_count_requests_and_batches(client: TestClient) -> None:
    client.post("/v1/predict", json={"inputs": ["a", "b", "c"]})
    text = client.get("/metrics").text
    assert 'transferkit_requests_total{method="POST",route="/v1/predict",status="200"}' in text
    assert "transferkit_batch_size_bucket" in text and "transferkit_queue_depth" in text
    assert "transferkit_request_seconds_bucket" in text
    count = [ln for ln in text.splitlines() if ln.startswith("transferkit_inputs_total")][0]
    assert float(count.split()[-1]) >= 3


def test_openapi_documents_predict(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/predict"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["inputs"]["anyOf"][1]["maxItems"] == 8
    assert {"200", "413", "415", "422", "503"} <= set(op["responses"])
    assert {"/healthz", "/readyz", "/v1/model", "/metrics", "/admin/reload"} <= set(spec["paths"])


def test_api_docs_need_no_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/docs-assets/swagger-ui-bundle.js" in page.text and "/openapi.json" in page.text
    assert "https://" not in page.text.replace("https://fastapi.tiangolo.com", "")  # no CDN
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN: not offered
    assert "/docs" not in client.get("/openapi.json").json()["paths"]


def test_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200


BAD = [
    ({"inputs": []}, 422, "the list is empty"),
    ({"inputs": [1, "x"]}, 422, "inputs[0]: expected a string, got number"),
    ({"inputs": {"a": 1}}, 422, "got object"),
    ({"inputs": None}, 422, "got null"),
    ({"inputs": ["x"] * 9}, 422, "more than the limit of 8 (--max-inputs)"),
    ({"inputs": ["x" * 501]}, 422, "501 characters, more than the limit of 500 (--max-text-chars)"),
    ({"text": "x"}, 422, 'with an "inputs" field'),
    ({"inputs": ["x"], "extra": 1}, 422, "unknown field(s) 'extra'"),
    (["x"], 422, 'with an "inputs" field'),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs_get_a_clear_4xx(client: TestClient, body, status: int, message: str) -> None:
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status
    assert message in r.json()["detail"]


def test_bad_transport_get_a_clear_4xx(client: TestClient) -> None:
    r = client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/v1/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "'text/plain'" in r.json()["detail"]
    r = client.post("/v1/predict", content=json.dumps({"inputs": ["x" * 400] * 8}))  # no content type
    assert r.status_code == 415
    big = json.dumps({"inputs": ["x" * 5000]}).encode()  # > 4096 bytes: refused before any other check
    r = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]
    r = client.post("/v1/predict", files={"inputs": ("a.png", b"\x89PNG....", "image/png")})
    assert r.status_code == 422 and "file uploads are for image models" in r.json()["detail"]
    assert client.get("/v1/predict").status_code == 405


def test_streamed_body_over_the_limit_is_refused(client: TestClient) -> None:
    def chunks():  # no Content-Length: the server counts while reading
        for _ in range(10):
            yield b"x" * 1000

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_auth(served_run: Path, capfd) -> None:
    key = "s3cret-key-0123456789"
    app = create_app(served_run, ServeSettings(), api_keys=[key, "other-key"])
    with TestClient(app) as c:
        r = c.post("/v1/predict", json={"inputs": ["x"]})
        assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
        r = c.post("/v1/predict", json={"inputs": ["x"]}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        r = c.post("/v1/predict", json={"inputs": ["x"]}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        assert c.get("/v1/model").status_code == 401
        assert c.post("/admin/reload", json={}).status_code == 404  # no admin keys: admin is off
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
    logged = capfd.readouterr()
    assert '"status": 401' in logged.err  # the access log ran ...
    assert key not in logged.err + logged.out  # ... and never wrote the key


def test_keys_from_env_and_file(served_run: Path, tmp_path: Path, monkeypatch) -> None:
    from transferkit.serving.settings import load_api_keys

    monkeypatch.setenv("TRANSFERKIT_API_KEYS", "k1, k2")
    keyfile = tmp_path / "keys"
    keyfile.write_text("# team keys\nk3\n\n")
    assert load_api_keys(ServeSettings(api_key_file=keyfile)) == ["k1", "k2", "k3"]
    keyfile.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no key"):
        load_api_keys(ServeSettings(api_key_file=keyfile))


def test_public_address_needs_keys(served_run: Path, monkeypatch) -> None:
    monkeypatch.delenv("TRANSFERKIT_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="--no-auth-i-know"):
        create_app(served_run, ServeSettings(host="0.0.0.0"))
    app = create_app(served_run, ServeSettings(host="0.0.0.0", no_auth_i_know=True))
    with TestClient(app) as c:
        assert c.post("/v1/predict", json={"inputs": ["x"]}).status_code == 200
        r = c.post("/admin/reload", json={})  # off without admin keys
        assert r.status_code == 404 and "admin endpoints are off" in r.json()["detail"]


def test_access_log_is_json_lines(served_run: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "access.jsonl"
    with TestClient(create_app(served_run, ServeSettings(access_log=log_file))) as c:
        c.post("/v1/predict", json={"inputs": ["a", "b"]}, headers={"X-Request-ID": "req-42"})
        c.post("/v1/predict", json={"inputs": []})
    for handler in logging.getLogger(f"transferkit.access.{log_file}").handlers:
        handler.flush()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    ok = next(r for r in records if r["request_id"] == "req-42")
    assert ok["status"] == 200 and ok["inputs"] == 2 and ok["path"] == "/v1/predict" and ok["ms"] > 0
    bad = [r for r in records if r["status"] == 422]
    assert bad and "empty" in bad[0]["error"]


def test_reload_swaps_the_version(client: TestClient) -> None:
    before = client.get("/v1/model").json()["version"]
    r = client.post("/admin/reload", json={}, headers=ADMIN)
    assert r.status_code == 200, r.text
    after = client.get("/v1/model").json()["version"]
    assert before != after and r.json()["version"] == after
    assert client.post("/v1/predict", json={"inputs": ["x"]}).json()["model_version"] == after


def test_reload_refusals_keep_the_old_model(client: TestClient, tmp_path: Path) -> None:
    before = client.get("/v1/model").json()["version"]
    r = client.post("/admin/reload", json={"run": str(tmp_path / "missing")}, headers=ADMIN)
    assert r.status_code == 403 and "not allowed" in r.json()["detail"]  # outside the served folder
    assert str(tmp_path) not in r.text
    r = client.post("/admin/reload", json={"run": "missing-inside"}, headers=ADMIN)
    assert r.status_code == 404 and "no such run folder" in r.json()["detail"]
    r = client.post("/admin/reload", json={"path": "x"}, headers=ADMIN)
    assert r.status_code == 422
    assert client.get("/v1/model").json()["version"] == before
    assert client.post("/v1/predict", json={"inputs": ["x"]}).status_code == 200


def test_reload_to_another_task_is_refused(fake_client, tmp_path: Path) -> None:
    client, loader = fake_client("text-classification", admin_keys=["adm"])
    loader.task = "generation"  # the next load yields a generation model
    r = client.post("/admin/reload", json={}, headers={"Authorization": "Bearer adm"})
    assert r.status_code == 409 and "cannot replace" in r.json()["detail"]


def test_queue_full_answers_503_with_retry_after(fake_client) -> None:
    import concurrent.futures as cf

    settings = ServeSettings(max_batch_size=1, max_wait_ms=0, max_queue=2, max_inputs=2)
    client, _ = fake_client(settings=settings, delay=0.3)
    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda i: client.post("/v1/predict", json={"inputs": ["ab", "cd"]}), range(8))
        )
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) >= 2 and 503 in codes
    refused = next(r for r in answers if r.status_code == 503)
    assert int(refused.headers["retry-after"]) >= 1 and "queue is full" in refused.json()["detail"]
    assert 'transferkit_rejected_total{reason="queue_full"}' in client.get("/metrics").text


def test_timeout_answers_504(fake_client) -> None:
    client, _ = fake_client(settings=ServeSettings(request_timeout_s=0.1), delay=0.5)
    r = client.post("/v1/predict", json={"inputs": ["x"]})
    assert r.status_code == 504 and "--request-timeout-s" in r.json()["detail"]


def test_model_failure_is_a_500_without_internals(fake_client) -> None:
    client, _ = fake_client(fail_on="boom")
    r = client.post("/v1/predict", json={"inputs": ["boom"]})
    assert r.status_code == 500 and "scripted failure" not in r.text
    assert client.post("/v1/predict", json={"inputs": ["fine"]}).status_code == 200


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_serve_runs_the_forward_pass_at_the_precision_asked(served_run: Path, precision: str) -> None:
    """``serve --precision``: the served model says its precision and predicts as ``load`` at it does."""
    with TestClient(create_app(served_run, ServeSettings(precision=precision))) as c:
        assert c.get("/v1/model").json()["precision"] == precision
        served = c.post("/v1/predict", json={"inputs": ["a great film", "dull"]}).json()
    expected = transferkit.load(served_run, precision=precision).predict(["a great film", "dull"])
    got = served["predictions"] if isinstance(served, dict) else served
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    for a, b in zip(got, expected, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)


def test_serve_precision_is_checked_with_the_settings() -> None:
    with pytest.raises(ValueError, match="precision"):
        ServeSettings(precision="fp8")


def test_threads_come_from_the_cores_and_workers(monkeypatch) -> None:
    import os

    import torch

    from transferkit.serving.server import set_threads

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert set_threads(ServeSettings(workers=2)) == 2
    assert set_threads(ServeSettings(workers=8)) == 1  # never below one thread
    assert set_threads(ServeSettings(workers=2, threads=3)) == 3  # --threads wins
    assert calls == [2, 1, 3]
