"""Shared test set-up: offline hub, a small learnable CSV, and one tiny fine-tuning run reused by many tests.

``TRANSFERKIT_CACHE`` is deliberately left alone: the install step fetched the catalog data into
``~/.cache/transferkit`` and tests that need a private cache redirect it themselves (``monkeypatch``).
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / torch: no network, no tokenizer thread pools, and one torch
# thread (the tiny test models are dominated by thread start-up and fight other jobs on a 2-core machine).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")
# training.precision=auto is bf16 on CPUs with native bf16 and fp32 elsewhere: the suite pins fp32 so that its
# equivalence checks (cached == uncached, ONNX == PyTorch, keep-better outcomes on tiny random models) do not
# depend on the machine; tests of precision itself set training.precision explicitly or unset this.
os.environ.setdefault("TRANSFERKIT_PRECISION", "fp32")

import random  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

POSITIVE = ("great", "wonderful", "excellent", "superb")
NEGATIVE = ("awful", "boring", "terrible", "dreadful")
FILLER = (
    "the",
    "a",
    "movie",
    "plot",
    "actor",
    "scene",
    "story",
    "film",
    "was",
    "is",
    "and",
    "of",
    "it",
    "this",
    "really",
)


def make_toy_frame(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """Binary ``text,label`` examples whose label is set by a keyword, with lengths from 3 to ~40 words."""
    rng = random.Random(seed)
    records = []
    for i in range(rows):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 40))]
        keyword = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words.insert(rng.randrange(len(words) + 1), keyword)
        records.append((" ".join(words), label))
    return pd.DataFrame(records, columns=["text", "label"])


@pytest.fixture(scope="module", autouse=True)
def _free_module_scratch(tmp_path_factory: pytest.TempPathFactory):
    """Deletes the folders a test module made with ``tmp_path_factory`` once the module is done.

    A full run of the suite writes several GB of run folders and checkpoints; CI machines can have little
    free disk. Function-scoped ``tmp_path`` folders of passed tests go at teardown
    (``tmp_path_retention_policy = "failed"`` in pyproject.toml); this does the same for module-scoped ones.
    Session-scoped fixtures name their folders ``session-*`` and keep them to the end.
    """
    base = tmp_path_factory.getbasetemp()
    before = {p.name for p in base.iterdir()}
    yield
    for folder in base.iterdir():
        if folder.name not in before and not folder.name.startswith("session-") and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Restores torch's thread count after each test: code under test may set it (``serve`` sizes its threads
    from the cores), and runs compared across tests must reduce in the same order to agree bit for bit."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture
def toy_frames() -> dict[str, pd.DataFrame]:
    """``{"train": DataFrame}`` for ``transferkit.fit(frames=...)``."""
    return {"train": make_toy_frame()}


@pytest.fixture
def toy_csv(tmp_path: Path) -> Path:
    """A 120-row ``text,label`` CSV (labels ``pos`` / ``neg``, balanced)."""
    path = tmp_path / "toy.csv"
    make_toy_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def toy_csv_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same CSV as ``toy_csv``, written once per session (for session-scoped runs)."""
    path = tmp_path_factory.mktemp("session-toy") / "toy.csv"
    make_toy_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_run_args(toy_csv_session: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The ``transferkit.fit`` arguments of ``tiny_run`` (for tests that check what the run recorded).

    ``log_every_steps=1`` so that the short run (6 optimizer steps) still writes step records.
    """
    return {
        "train": str(toy_csv_session),
        "backbone": "tiny-bert",
        "strategy": "full",
        "epochs": 2,
        "output": str(tmp_path_factory.mktemp("session-runs") / "tiny_full"),
        # the run must be the fine-tuned model itself, whatever the (random) baseline scores
        "overrides": [
            "training.learning_rate=1e-3",
            "training.progress=false",
            "training.log_every_steps=1",
            "evaluation.keep_better=false",
        ],  # fmt: skip
    }


@pytest.fixture(scope="session")
def tiny_run(tiny_run_args: dict):
    """One full fine-tuning run of tiny-bert on the toy CSV, shared by every test that only reads it."""
    import transferkit

    return transferkit.fit(**tiny_run_args)


@pytest.fixture
def interrupted_copy():
    """``copy(run_dir, target, step)``: a copy of a finished run as a kill right after the step-``step``
    checkpoint would leave it (later checkpoints and every final output never written); returns ``target``."""
    import shutil

    def copy(run_dir: Path, target: Path, step: int) -> Path:
        shutil.copytree(run_dir, target)
        for name in [
            "metrics.json",
            "labels.json",
            "README.md",
            "model",
            "transformers",
            "training_curves.png",
        ]:
            p = target / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        for ckpt in (target / "checkpoints").iterdir():
            if int(ckpt.name.split("-")[1]) > step:
                shutil.rmtree(ckpt)
        return target

    return copy
