"""Image inputs: only the allowed formats are decoded (never EPS through Ghostscript), every decode failure is
a 422 naming its input, images are reduced to the model's input size as they are decoded, and at most
``--max-concurrent-decodes`` requests decode at once."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from PIL import Image

from transferkit.serving import ServeSettings
from transferkit.serving.adapters import IMAGE_FORMATS, ImageClassificationAdapter, model_input_side


def encoded(fmt: str, size=(8, 8), color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_every_allowed_format_is_served(fake_client, fmt: str) -> None:
    client, _ = fake_client("image-classification")
    r = client.post("/v1/predict", json={"inputs": [b64(encoded(fmt))]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == "pos"  # red survived the round trip


def test_eps_never_reaches_ghostscript(fake_client, monkeypatch) -> None:
    from PIL import EpsImagePlugin

    calls = []
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs", raising=False)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a) or None)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n%%EOF\n"
    client, _ = fake_client("image-classification")
    r = client.post("/v1/predict", json={"inputs": [b64(eps)]})
    assert r.status_code == 422 and "allowed formats: PNG, JPEG" in r.json()["detail"]
    assert calls == []  # the old code handed the file to Ghostscript


@pytest.mark.parametrize("error", [ValueError, TypeError, IndexError, ZeroDivisionError, MemoryError])
def test_any_decode_failure_is_a_422_naming_the_input(fake_client, monkeypatch, error) -> None:
    real_convert = Image.Image.convert

    def convert(self, *args, **kwargs):
        if self.size == (9, 9):  # only the second image fails, as a corrupt file would
            raise error("decoder blew up")
        return real_convert(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", convert)
    client, loader = fake_client("image-classification")
    r = client.post("/v1/predict", json={"inputs": [b64(encoded("PNG")), b64(encoded("PNG", (9, 9)))]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"inputs[1]: not a readable image file ({error.__name__})"
    r = client.post("/v1/predict", files=[("inputs", ("a.png", encoded("PNG", (9, 9)), "image/png"))])
    assert r.status_code == 422 and r.json()["detail"].startswith("file 0:")
    assert len(loader.loaded[0].batches) == 1  # the warm-up only


def test_images_are_reduced_to_the_model_input_size_when_decoded() -> None:
    adapter = ImageClassificationAdapter()
    adapter.configure(SimpleNamespace(preprocess=SimpleNamespace(size=(32, 32), processor=None)))
    assert adapter.target_side == 32
    settings = ServeSettings()
    big, small, jpeg = encoded("PNG", (256, 128)), encoded("PNG", (20, 10)), encoded("JPEG", (640, 480))
    images = adapter.decode([b64(big), b64(small), b64(jpeg)], settings)
    assert [im.size for im in images] == [(64, 32), (20, 10), (43, 32)]  # shorter side 32, never enlarged
    assert all(im.mode == "RGB" for im in images)
    assert adapter.cost(images) == sum(w * h * 3 for w, h in [(64, 32), (20, 10), (43, 32)])
    unknown = ImageClassificationAdapter()
    unknown.configure(SimpleNamespace())  # a predictor that does not say: images kept as sent
    assert unknown.decode([b64(big)], settings)[0].size == (256, 128)


@pytest.mark.parametrize(
    ("processor", "side"),
    [
        (SimpleNamespace(size={"height": 224, "width": 224}), 224),
        (SimpleNamespace(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}), 256),
        (SimpleNamespace(size=None, crop_size={"height": 192, "width": 160}), 192),
        (SimpleNamespace(size="weird"), None),
    ],
)
def test_model_input_side_of_hugging_face_processors(processor, side) -> None:
    predictor = SimpleNamespace(preprocess=SimpleNamespace(size=None, processor=processor))
    assert model_input_side(predictor) == side


def test_image_decodes_are_capped(fake_client, monkeypatch) -> None:
    busy, peak, lock = [0], [0], threading.Lock()
    real = ImageClassificationAdapter.decode

    def slow_decode(self, inputs, settings):
        with lock:
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
        time.sleep(0.15)
        with lock:
            busy[0] -= 1
        return real(self, inputs, settings)

    monkeypatch.setattr(ImageClassificationAdapter, "decode", slow_decode)
    client, _ = fake_client("image-classification", settings=ServeSettings(max_concurrent_decodes=2))
    body = {"inputs": [b64(encoded("PNG"))]}
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: client.post("/v1/predict", json=body).status_code, range(6)))
    assert codes == [200] * 6
    assert peak[0] <= 2  # the old code decoded all six at once


def test_queue_bytes_refuse_images_past_the_budget(fake_client) -> None:
    # one 64x64 image is 12,288 decoded bytes; the budget holds one waiting request, not two
    settings = ServeSettings(max_batch_size=1, max_wait_ms=0, max_queue_bytes=20_000)
    client, _ = fake_client("image-classification", settings=settings, delay=0.4)
    body = {"inputs": [b64(encoded("PNG", (64, 64)))]}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/predict", json=body), range(4)))
    codes = sorted(r.status_code for r in answers)
    assert 200 in codes and 503 in codes, codes
    refused = next(r for r in answers if r.status_code == 503)
    assert "queue is full (bytes)" in refused.json()["detail"] and refused.headers["retry-after"]
