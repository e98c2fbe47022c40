"""A served fake model of any task (no torch import: starts in a second), for the page and shutdown tests.

Usage: ``python fake_server.py TASK PORT RUN_DIR [SECONDS_PER_BATCH]``.
"""

from __future__ import annotations

import sys
import time

import uvicorn

from transferkit.serving import ServeSettings, create_app


class FakePredictor:
    """The predictor interface of ``transferkit.tasks``: fixed, recognisable outputs per task."""

    labels = ["cat", "dog"]
    metrics = {
        "test": {"accuracy": 0.9, "confusion_matrix": {"labels": ["cat", "dog"], "matrix": [[9, 1], [1, 9]]}}
    }

    def __init__(self, task: str, run_dir: str, delay: float):
        self.task, self.run_dir, self.delay = task, run_dir, delay

    def predict(self, inputs: list) -> list:
        if self.delay and inputs != ["transferkit warm-up"]:
            time.sleep(self.delay)
        return [self._one(x) for x in inputs]

    def _one(self, x):
        if self.task == "token-classification":
            # every capitalised word is a PER entity
            spans, at = [], 0
            for word in x.split(" "):
                if word[:1].isupper():
                    spans.append(
                        {"text": word, "type": "PER", "start": at, "end": at + len(word), "score": 0.9}
                    )
                at += len(word) + 1
            return spans
        if self.task == "generation":
            return {"text": x + " and they lived happily ever after"}
        return {"label": "dog", "score": 0.8, "scores": {"cat": 0.2, "dog": 0.8}}


def main() -> None:
    task, port, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0

    def loader(path):
        return FakePredictor(task, path, delay)

    loader.task = task
    app = create_app(run_dir, ServeSettings(max_batch_size=1, max_wait_ms=0), loader=loader, api_keys=[])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, timeout_graceful_shutdown=20, log_level="warning"
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
