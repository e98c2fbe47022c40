"""Per-task adapters through the app, each with a fake predictor of its task (the documented interface):
token classification, image classification (base64 and multipart), generation; and the adapter table
covers every registered task."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from transferkit.serving import ServeSettings
from transferkit.serving.adapters import ADAPTERS, adapter_for
from transferkit.tasks import task_names


def png(color=(255, 0, 0), size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_every_registered_task_has_an_adapter() -> None:
    missing = sorted(set(task_names()) - set(ADAPTERS))
    assert not missing, f"tasks without a serving adapter: {missing}"


def test_unknown_task_is_a_clear_error() -> None:
    from transferkit.errors import RegistryError

    with pytest.raises(RegistryError, match="cannot be served"):
        adapter_for("speech-recognition")


def test_token_classification_texts_and_token_lists(fake_client) -> None:
    client, loader = fake_client("token-classification")
    r = client.post("/v1/predict", json={"inputs": ["Ada Lovelace wrote", ["Alan", "Turing", "lived"]]})
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first == {"entities": [{"text": "Ada", "type": "PER", "start": 0, "end": 3, "score": 0.9}]}
    assert second["entities"][0]["text"] == "Alan"
    assert loader.loaded[0].batches[-1] == [
        "Ada Lovelace wrote",
        "Alan Turing lived",
    ]  # tokens joined by spaces
    assert client.post("/v1/predict", json={"inputs": "Grace Hopper"}).json()["predictions"][0]["entities"]
    r = client.post("/v1/predict", json={"inputs": [["ok", 3]]})
    assert r.status_code == 422 and "token list" in r.json()["detail"]
    schema = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]
    item = schema["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["predictions"][
        "items"
    ]
    assert "entities" in item["properties"]


def test_image_classification_base64_and_data_url(fake_client) -> None:
    client, loader = fake_client("image-classification")
    red, black = png((255, 0, 0)), png((0, 0, 0))
    r = client.post("/v1/predict", json={"inputs": [b64(red), "data:image/png;base64," + b64(black)]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == ["pos", "neg"]  # the fake reads the red channel
    images = loader.loaded[0].batches[-1]
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images)


def test_image_classification_multipart_upload(fake_client) -> None:
    client, _ = fake_client("image-classification")
    files = [
        ("inputs", ("a.png", png((255, 0, 0)), "image/png")),
        ("inputs", ("b.png", png((0, 0, 0)), "image/png")),
    ]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == ["pos", "neg"]
    spec = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in spec


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["not base64!!"], "not valid base64"),
        ([b64(b"plain text, not an image")], "not a readable image"),
        ([7], "expected a base64-encoded image"),
        ([b64(png(size=(300, 300)))], "more than the limit of 10,000 pixels"),
        ([b64(b"\x89PNG" + b"0" * 3000)], "larger than the limit of 2,000 bytes (--max-image-bytes)"),
    ],
    ids=["bad-base64", "not-an-image", "wrong-type", "too-many-pixels", "too-many-bytes"],
)
def test_bad_images_get_a_clear_422(fake_client, inputs, message: str) -> None:
    client, loader = fake_client(
        "image-classification", settings=ServeSettings(max_image_bytes=2000, max_image_pixels=10_000)
    )
    r = client.post("/v1/predict", json={"inputs": inputs})
    assert r.status_code == 422
    assert message in r.json()["detail"]
    assert len(loader.loaded[0].batches) == 1  # only the warm-up: refused inputs never reach the model


def test_bad_upload_gets_a_clear_422(fake_client) -> None:
    client, _ = fake_client("image-classification")
    r = client.post("/v1/predict", files={"inputs": ("x.png", b"garbage", "image/png")})
    assert r.status_code == 422 and "file 0: not a readable image" in r.json()["detail"]


def test_generation(fake_client) -> None:
    client, _ = fake_client("generation")
    r = client.post("/v1/predict", json={"inputs": ["Once upon a time", "Hello"]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [{"text": "Once upon a time ... [v1]"}, {"text": "Hello ... [v1]"}]
    r = client.post("/v1/predict", json={"inputs": [{"prompt": "x"}]})
    assert r.status_code == 422 and "expected a string" in r.json()["detail"]


@pytest.mark.parametrize("task", sorted(ADAPTERS))
def test_every_adapter_serves_its_schema_and_model_card(fake_client, task: str) -> None:
    client, loader = fake_client(task)
    card = client.get("/v1/model").json()
    assert card["task"] == task and card["metrics"] == {"test": {"accuracy": 0.75}}
    assert loader.loaded[0].batches[0] == adapter_for(task).warmup_inputs()  # warmed up before serving
    spec = client.get("/openapi.json").json()
    assert task in spec["paths"]["/v1/predict"]["post"]["description"]
