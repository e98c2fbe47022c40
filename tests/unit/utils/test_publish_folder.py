"""publish_folder: a folder appears complete or not at all, and an existing one is treated as asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.utils.io import DiscardFolder, move_into_place, publish_folder


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_block_writes_into_a_sibling_that_becomes_final(tmp_path: Path) -> None:
    final = tmp_path / "model"
    with publish_folder(final) as tmp:
        assert tmp.parent == tmp_path and tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "weights.bin").write_text("w")
        assert not final.exists()  # nothing visible until the block completes
    assert (final / "weights.bin").read_text() == "w"
    assert _listing(tmp_path) == ["model"]


def test_error_leaves_nothing_half_written_and_the_old_folder_intact(tmp_path: Path) -> None:
    final = tmp_path / "model"
    final.mkdir()
    (final / "old.bin").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), publish_folder(final) as tmp:
        (tmp / "half.bin").write_text("half")
        raise RuntimeError("disk full")
    assert _listing(tmp_path) == ["model"] and _listing(final) == ["old.bin"]


def test_replace_swaps_an_existing_folder(tmp_path: Path) -> None:
    final = tmp_path / "step-00000003"
    final.mkdir()
    (final / "old.bin").write_text("old")
    with publish_folder(final) as tmp:
        (tmp / "new.bin").write_text("new")
    assert _listing(final) == ["new.bin"]
    assert _listing(tmp_path) == ["step-00000003"]  # neither the .partial nor the moved-aside .old is left


def test_keep_and_error_leave_an_existing_folder_alone(tmp_path: Path) -> None:
    final = tmp_path / "cache"
    final.mkdir()
    (final / "theirs.bin").write_text("theirs")
    with publish_folder(final, if_exists="keep") as tmp:
        (tmp / "mine.bin").write_text("mine")
    assert _listing(final) == ["theirs.bin"] and _listing(tmp_path) == ["cache"]
    ran = False
    with pytest.raises(FileExistsError), publish_folder(final, if_exists="error"):
        ran = True
    assert not ran and _listing(final) == ["theirs.bin"]  # refused before any work


def test_error_refusal_also_removes_a_given_staging_folder(tmp_path: Path) -> None:
    final, staging = tmp_path / "export", tmp_path / ".export.123.partial"
    final.mkdir()
    staging.mkdir()
    with pytest.raises(FileExistsError), publish_folder(final, if_exists="error", staging=staging):
        pass
    assert not staging.exists()


def test_discard_publishes_nothing_without_an_error(tmp_path: Path) -> None:
    with publish_folder(tmp_path / "transformers") as tmp:
        (tmp / "config.json").write_text("{}")
        raise DiscardFolder
    assert not any(tmp_path.iterdir())


def test_a_partial_left_by_a_kill_is_removed_by_the_next_publish(tmp_path: Path) -> None:
    stale = tmp_path / "model.partial"
    stale.mkdir()
    (stale / "junk.bin").write_text("junk")
    with publish_folder(tmp_path / "model") as tmp:
        assert tmp == stale and not any(tmp.iterdir())
        (tmp / "weights.bin").write_text("w")
    assert _listing(tmp_path) == ["model"] and _listing(tmp_path / "model") == ["weights.bin"]


def test_staging_folder_is_used_and_removed(tmp_path: Path) -> None:
    staging = tmp_path / ".out.4242.abc.partial"
    with publish_folder(tmp_path / "out", if_exists="error", staging=staging) as tmp:
        assert tmp == staging
        (tmp / "model.onnx").write_text("onnx")
    assert _listing(tmp_path) == ["out"]


def test_move_into_place_refuses_or_replaces(tmp_path: Path) -> None:
    a, b, final = tmp_path / "a", tmp_path / "b", tmp_path / "final"
    for folder in (a, b):
        folder.mkdir()
        (folder / "name").write_text(folder.name)
    move_into_place(a, final, if_exists="error")
    with pytest.raises(FileExistsError):
        move_into_place(b, final, if_exists="error")
    assert (final / "name").read_text() == "a" and b.exists()
    move_into_place(b, final)
    assert (final / "name").read_text() == "b" and _listing(tmp_path) == ["final"]
