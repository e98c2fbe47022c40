"""Serving test helpers: fake predictors of every task (the documented predictor interface) and clients."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from transferkit.serving import ServeSettings, create_app


class FakePredictor:
    """The predictor interface of ``transferkit.tasks`` with a scripted ``predict``.

    Records every batch it receives; ``delay`` seconds per call; inputs equal to ``fail_on`` raise.
    """

    def __init__(self, task: str, run_dir: Path, delay: float = 0.0, fail_on=None, tag: str = "v1"):
        self.task, self.run_dir, self.delay, self.fail_on, self.tag = task, Path(run_dir), delay, fail_on, tag
        self.labels = ["neg", "pos"] if "classification" in task else []
        self.metrics = {"test": {"accuracy": 0.75}}
        self.batches: list[list] = []
        self.lock = threading.Lock()

    def predict(self, inputs):
        with self.lock:
            self.batches.append(list(inputs))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and any(x == self.fail_on for x in inputs):
            raise RuntimeError("scripted failure")
        return [self._one(x) for x in inputs]

    def _one(self, x):
        if self.task == "token-classification":
            # one entity over the first word, whatever it is
            first = x.split(" ")[0]
            return [{"text": first, "type": "PER", "start": 0, "end": len(first), "score": 0.9}]
        if self.task == "generation":
            return {"text": f"{x} ... [{self.tag}]"}
        if self.task == "image-classification":
            p = float(x.getpixel((0, 0))[0]) / 255  # red channel of the top-left pixel
            return {
                "label": "pos" if p >= 0.5 else "neg",
                "score": max(p, 1 - p),
                "scores": {"neg": 1 - p, "pos": p},
            }
        p = min(1.0, len(x) / 100)  # text classification: longer texts are more "pos"
        return {
            "label": "pos" if p >= 0.5 else "neg",
            "score": max(p, 1 - p),
            "scores": {"neg": 1 - p, "pos": p},
        }


class FakeLoader:
    """``run_dir -> FakePredictor`` with a ``task`` attribute (what ``create_app`` reads for the schema)."""

    def __init__(self, task: str = "text-classification", **kwargs):
        self.task, self.kwargs, self.loaded = task, kwargs, []

    def __call__(self, run_dir):
        predictor = FakePredictor(self.task, run_dir, **self.kwargs)
        self.loaded.append(predictor)
        return predictor


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "fake-run"
    run.mkdir()
    return run


@pytest.fixture
def fake_client(fake_run: Path):
    """``make(task="...", settings=..., api_keys=..., admin_keys=..., **predictor_kwargs) -> (TestClient,
    FakeLoader)``; started and closed. No keys unless given (admin off)."""
    clients = []

    def make(
        task: str = "text-classification",
        settings: ServeSettings | None = None,
        api_keys=None,
        admin_keys=None,
        **kwargs,
    ):
        loader = FakeLoader(task, **kwargs)
        app = create_app(
            fake_run,
            settings or ServeSettings(),
            loader=loader,
            api_keys=api_keys or [],
            admin_keys=admin_keys or [],
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client, loader

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def served_run(tiny_run) -> Path:
    """The session's tiny text-classification run (tiny-bert fine-tuned on the toy CSV)."""
    return Path(tiny_run.run_dir)
