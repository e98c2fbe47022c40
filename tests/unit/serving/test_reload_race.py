"""``POST /admin/reload`` against a folder swapped for a link between the check and the load.

The reload root holds run folders ``a`` (served) and ``b``; ``outside`` (beside the root) is another run
that must never be served. Each fake run names itself in ``model/who``; the fake loader reads that file, and
the generation predictor echoes it in every prediction, so a test sees which files were really read. See
SECURITY.md ("loads only folders inside the reload root") and :mod:`transferkit.serving.run_copy`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.unit.serving.conftest import FakeLoader

from transferkit.errors import RunError
from transferkit.serving import ServeSettings, admin, create_app
from transferkit.serving.run_copy import NOT_COPIED, private_copy
from transferkit.serving.security import NotAllowed

ADM = "admin-key-9876543210"
ADMIN = {"Authorization": f"Bearer {ADM}"}
REFUSED = "reload refused: that folder is not allowed (--reload-root)"


def _run(folder: Path, who: str) -> Path:
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "who").write_text(who)
    (folder / "labels.json").write_text("{}")
    return folder


class WhoLoader(FakeLoader):
    """A generation FakeLoader whose predictor is tagged with the ``model/who`` it read."""

    def __init__(self, during_load=None):
        super().__init__("generation")
        self.during_load = during_load  # called with the folder handed to the loader, before it reads it

    def __call__(self, run_dir):
        predictor = super().__call__(run_dir)
        if self.during_load is not None:
            self.during_load(Path(run_dir))
        predictor.tag = (Path(run_dir) / "model" / "who").read_text()
        predictor.files = sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob("*"))
        return predictor


@pytest.fixture
def tree(tmp_path: Path, monkeypatch) -> dict:
    root = tmp_path / "root"
    runs = {"a": _run(root / "a", "a"), "b": _run(root / "b", "b")}
    runs["outside"] = _run(tmp_path / "outside", "outside")
    scratch = tmp_path / "scratch"  # where the private copies go, to see that they are removed
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return {"root": root, "scratch": scratch, **runs}


@pytest.fixture
def serve(tree: dict):
    """``serve(loader) -> TestClient`` serving ``root/a`` with admin keys and ``--reload-root root``."""
    clients = []

    def make(loader: WhoLoader) -> TestClient:
        settings = ServeSettings(reload_root=tree["root"], reload_interval_s=0)
        client = TestClient(create_app(tree["a"], settings, loader=loader, admin_keys=[ADM]))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _served(client: TestClient) -> str:
    """Whose ``model/who`` the model answering /v1/predict was loaded from."""
    r = client.post("/v1/predict", json={"inputs": ["q"]})
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]["text"].rsplit("[", 1)[1].rstrip("]")


def _swap_for_link(folder: Path, to: Path) -> None:
    """What someone who can write inside the root does: move ``folder`` away, leave a link in its place."""
    folder.rename(folder.with_name(folder.name + "-moved"))
    folder.symlink_to(to, target_is_directory=True)


@pytest.mark.parametrize("swapped", ["the run folder", "model/ inside it"])
def test_a_folder_swapped_for_a_link_after_the_check_is_refused(
    serve, tree: dict, monkeypatch, swapped: str
) -> None:
    checked, expected = [], tree["b"].resolve()

    def check_then_swap(run: str, root: Path) -> Path:  # the real check, then the swap, then the load
        target = admin_check(run, root)
        checked.append(target)
        if swapped == "the run folder":
            _swap_for_link(target, tree["outside"])
        else:
            _swap_for_link(target / "model", tree["outside"] / "model")
        return target

    admin_check = admin.reload_target
    monkeypatch.setattr(admin, "reload_target", check_then_swap)
    loader = WhoLoader()
    client = serve(loader)
    r = client.post("/admin/reload", json={"run": "b"}, headers=ADMIN)
    assert checked == [expected]  # the check passed: the folder was inside the root then
    assert r.status_code == 403 and r.json()["detail"] == REFUSED
    assert str(tree["root"].parent) not in r.text
    assert [p.tag for p in loader.loaded] == ["a"]  # the loader never ran on the swapped folder
    assert _served(client) == "a" and client.get("/v1/model").json()["version"] == "a#1"
    assert not list(tree["scratch"].iterdir())  # the partial copy is gone


def test_a_swap_while_the_loader_runs_changes_nothing_it_reads(serve, tree: dict) -> None:
    def swap(folder: Path) -> None:  # the loader has started; the copy is already made
        assert not folder.is_relative_to(tree["root"]) and folder.name == "b"
        _swap_for_link(tree["b"], tree["outside"])

    loader = WhoLoader()
    client = serve(loader)
    loader.during_load = swap  # for the reload only, not for the first load (a)
    r = client.post("/admin/reload", json={"run": "b"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert _served(client) == "b"
    loader.during_load = None
    r = client.post("/admin/reload", json={}, headers=ADMIN)  # the current folder again: now a link
    assert r.status_code == 403 and r.json()["detail"] == REFUSED
    assert _served(client) == "b"


def test_sighup_reads_a_folder_that_came_through_the_root_through_it_again(serve, tree: dict) -> None:
    loader = WhoLoader()
    client = serve(loader)
    assert client.post("/admin/reload", json={"run": "b"}, headers=ADMIN).status_code == 200
    _swap_for_link(tree["b"], tree["outside"])
    slot = client.app.state.slot
    with pytest.raises(NotAllowed):
        client.portal.call(slot.reload)  # what the SIGHUP handler calls: no folder, no root
    assert _served(client) == "b" and [p.tag for p in loader.loaded] == ["a", "b"]


@pytest.mark.parametrize("target", ["outside", "inside"])
def test_a_link_inside_the_run_is_refused(serve, tree: dict, target: str) -> None:
    who = tree["b"] / "model" / "who"
    who.unlink()
    who.symlink_to(tree["outside"] / "model" / "who" if target == "outside" else tree["b"] / "labels.json")
    loader = WhoLoader()
    client = serve(loader)
    r = client.post("/admin/reload", json={"run": "b"}, headers=ADMIN)
    assert r.status_code == 403 and r.json()["detail"] == REFUSED
    assert _served(client) == "a" and len(loader.loaded) == 1


def test_a_legitimate_reload_reads_a_private_copy(serve, tree: dict) -> None:
    for skipped in NOT_COPIED:  # what only resuming and logging read stays behind
        (tree["b"] / skipped / "step-1").mkdir(parents=True)
        (tree["b"] / skipped / "step-1" / "state.pt").write_bytes(b"\0" * 100)
    (tree["b"] / "model" / "weights.bin").write_bytes(os.urandom(3 << 20))  # more than one copy chunk
    os.mkfifo(tree["b"] / "model" / "pipe")  # never opened (it would block a reader)
    loader = WhoLoader()
    client = serve(loader)
    r = client.post("/admin/reload", json={"run": "b"}, headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"status": "reloaded", "version": "b#2", "run": "b"}
    assert _served(client) == "b"
    read = loader.loaded[-1]
    assert read.run_dir.name == "b" and read.run_dir.parent.parent == tree["scratch"]  # not in the root
    assert read.files == ["labels.json", "model", "model/weights.bin", "model/who"]
    assert not read.run_dir.exists() and not list(tree["scratch"].iterdir())  # removed once loaded
    assert client.app.state.slot.current.run_dir == tree["b"].resolve()
    assert client.post("/admin/reload", json={}, headers=ADMIN).status_code == 200  # b again
    assert _served(client) == "b" and loader.loaded[-1].files == read.files


def test_private_copy_holds_the_same_bytes_and_refuses_what_is_not_under_the_root(tree: dict) -> None:
    weights = os.urandom(1 << 16)
    (tree["b"] / "model" / "deep" / "er").mkdir(parents=True)
    (tree["b"] / "model" / "deep" / "er" / "w.bin").write_bytes(weights)
    with private_copy(tree["root"], tree["b"].resolve()) as copy:
        assert (copy / "model" / "deep" / "er" / "w.bin").read_bytes() == weights
        assert (copy / "model" / "who").read_text() == "b"
        assert oct(copy.parent.stat().st_mode & 0o777) == "0o700"
    assert not copy.exists()

    def copy_of(folder: Path) -> None:
        with private_copy(tree["root"], folder):
            pass

    with pytest.raises(NotAllowed):
        copy_of(tree["outside"].resolve())
    os.symlink(tree["outside"], tree["root"] / "link", target_is_directory=True)
    with pytest.raises(NotAllowed):  # a link met on the way down from the root (the path is not resolved)
        copy_of(tree["root"].resolve() / "link")
    shutil.rmtree(tree["b"])
    with pytest.raises(RunError, match="vanished"):
        copy_of(tree["root"].resolve() / "b")
    assert not list(tree["scratch"].iterdir())


def test_a_real_run_reloads_from_its_private_copy(served_run: Path, tree: dict) -> None:
    import transferkit

    for name in ("a", "b"):
        shutil.rmtree(tree[name])
        shutil.copytree(served_run, tree[name])
    settings = ServeSettings(reload_root=tree["root"], reload_interval_s=0)
    texts = ["a great and wonderful film", "boring and dreadful"]
    expected = [p["label"] for p in transferkit.load(served_run).predict(texts)]
    with TestClient(create_app(tree["a"], settings, admin_keys=[ADM])) as client:
        r = client.post("/admin/reload", json={"run": "b"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["version"] == "b#2", r.text
        r = client.post("/v1/predict", json={"inputs": texts})
        assert r.status_code == 200 and r.json()["model_version"] == "b#2"
        assert [p["label"] for p in r.json()["predictions"]] == expected
        assert client.get("/v1/model").json()["backbone"] == "tiny-bert"  # config.yaml, read from the copy
        assert not list(tree["scratch"].iterdir())
