"""Atomic file writes and folder publishes.

Every artefact transferkit writes (metrics JSON, plots, checkpoints) goes to a temporary file in the
destination's folder first and is then moved into place with :func:`os.replace`. A crash or error halfway
therefore never leaves a truncated file behind: readers see either the old file or the complete new one.
The temporary file lives in the same folder because ``os.replace`` is only atomic within one file system.

Folders (a saved model, a checkpoint, an export) are written the same way by :func:`publish_folder`: into a
sibling temporary folder that is renamed into place once the writing block completes.

Files that must never replace anything (``transferkit predict --output``, ``evaluate --output``) are
written with ``exclusive=True``: the finished temporary file is hard-linked to its name, which fails when
that name exists, even if it appeared while the file was being written (``os.replace`` would overwrite it).

Atomic is not yet durable: after a power cut the rename can reach the disk before the data it points to.
So every file is fsynced before its rename and the parent folder after it (the rename itself is a change
to the parent); a published folder has every file and sub-folder fsynced before it is renamed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

IfExists = Literal["replace", "keep", "error"]


def _temp_path(path: Path) -> Path:
    """Creates an empty temporary file next to ``path`` and returns its path.

    The name keeps ``path``'s suffix, because some writers (matplotlib, safetensors) pick the format
    from it.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


@functools.cache
def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give a new file (0o666 minus the umask)."""
    umask = os.umask(0)  # the only portable way to read the umask is to set it and restore it
    os.umask(umask)
    return 0o666 & ~umask


def _match_permissions(tmp: Path, path: Path) -> None:
    """Gives the temporary file the mode the destination has (or would get), not mkstemp's 0o600."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = _default_mode()
    os.chmod(tmp, mode)


def _fsync_file(path: Path) -> None:
    """Flushes a written file's contents to disk so the rename cannot expose an empty file."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: str | Path) -> None:
    """Flushes a folder's entries (names created, renamed or removed in it) to disk.

    A no-op on Windows, which cannot open a folder for fsync, and on file systems that refuse to fsync one.
    """
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):  # a file system without dir fsync
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """Fsyncs every file under ``folder``, then every folder bottom-up (``folder`` itself last).

    Symbolic links are neither followed nor flushed.
    """
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                _fsync_file(path)
        fsync_dir(root)


# link() errors of file systems without hard links (FAT, exFAT, some network shares)
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def _put_in_place(tmp: Path, path: Path, exclusive: bool) -> None:
    """Renames the finished ``tmp`` onto ``path``; with ``exclusive``, only where ``path`` does not exist.

    ``os.link`` gives ``tmp`` the name ``path`` atomically and fails if the name exists, whenever it
    appeared. Where hard links are unsupported, ``path`` is created with O_EXCL and ``tmp`` copied into it:
    still never over another file, though a reader may then see it half-written.
    """
    if not exclusive:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        with open(tmp, "rb") as src, open(path, "xb") as dst:  # "x": O_CREAT | O_EXCL
            try:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
            except BaseException:
                dst.close()
                path.unlink(missing_ok=True)  # ours: created exclusively above
                raise
    tmp.unlink()


def _make_parent(path: Path) -> None:
    """Creates ``path``'s folder; a file where a folder should be is NotADirectoryError naming that file
    (``mkdir`` says FileExistsError, which reads as if ``path`` itself existed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", e.filename or str(path.parent)) from None


def _name_destination(err: BaseException, tmp: Path, path: Path) -> None:
    """An OSError without a file name (ENOSPC from a write) or naming the temporary file gets ``path``."""
    # only errno-style errors: a name given to OSError("message") would replace its message when printed
    if isinstance(err, OSError) and err.strerror is not None and err.filename in (None, str(tmp)):
        err.filename = str(path)


def atomic_save_via(path: str | Path, writer: Callable[[Path], None], exclusive: bool = False) -> Path:
    """Lets ``writer`` write a temporary file next to ``path``, then renames it onto ``path``.

    Use this for libraries that write files themselves (``fig.savefig``, ``torch.save``,
    ``safetensors.torch.save_file``). The parent folder is created if needed. If ``writer`` raises, the
    temporary file is removed, an existing file at ``path`` is left untouched and the error propagates.

    Args:
        path: Final destination.
        writer: Called once with the temporary path (same folder and suffix as ``path``); must write the
            complete file there.
        exclusive: Never replace an existing ``path``, even one that appears while ``writer`` runs.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: with ``exclusive``, when ``path`` exists (the temporary file is removed).
        OSError: as the writer or the file system raised it; one without a file name (a full disk) gets
            ``path``'s, so the error names the file the user asked for.

    Example:
        >>> atomic_save_via("model.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    """
    path = Path(path)
    _make_parent(path)
    tmp = _temp_path(path)
    try:
        writer(tmp)
        _fsync_file(tmp)
        _match_permissions(tmp, path)
        _put_in_place(tmp, path, exclusive)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        _name_destination(e, tmp, path)
        raise
    fsync_dir(path.parent)  # the rename itself
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", exclusive: bool = False) -> Path:
    """Writes ``text`` to ``path`` atomically (temporary file, flush, fsync, rename).

    Args:
        path: Final destination; its parent folder is created if needed.
        text: The full file contents.
        encoding: Text encoding.
        exclusive: Never replace an existing ``path`` (see :func:`atomic_save_via`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: with ``exclusive``, when ``path`` exists.
    """
    path = Path(path)
    _make_parent(path)
    with tempfile.NamedTemporaryFile(
        "w", encoding=encoding, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        tmp = Path(handle.name)
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException as e:
            with contextlib.suppress(OSError):  # closing flushes again, and fails again on a full disk
                handle.close()
            tmp.unlink(missing_ok=True)
            _name_destination(e, tmp, path)
            raise
    try:
        _match_permissions(tmp, path)
        _put_in_place(tmp, path, exclusive)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        _name_destination(e, tmp, path)
        raise
    fsync_dir(path.parent)  # the rename itself
    return path


def atomic_write_json(path: str | Path, obj: Any, exclusive: bool = False) -> Path:
    """Serialises ``obj`` as indented JSON and writes it to ``path`` atomically.

    The object is serialised *before* anything touches the disk, so an unserialisable object leaves an
    existing file intact.

    Args:
        path: Final destination.
        obj: A JSON-serialisable object (plain dicts, lists, str, int, float, bool, None).
        exclusive: Never replace an existing ``path`` (see :func:`atomic_save_via`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``obj`` contains NaN or infinity (which would be invalid JSON).
        TypeError: If ``obj`` contains something JSON cannot represent.
        FileExistsError: with ``exclusive``, when ``path`` exists.
    """
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n", exclusive=exclusive)


# what a write cut short by a kill leaves: atomic_save_via / atomic_write_text's temporary files
# (".NAME.<8 random>.tmp[.ext]"), publish_folder's "NAME.partial", a cross-device ".NAME.<pid>.partial" and
# the "NAME.old" move_into_place parks between its two renames
_LEFTOVER = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]+)?$|\.partial$|\.old$")


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Removes, anywhere under ``folder``, the temporary files and folders of writes cut short by a kill.

    Only for a folder that this process alone writes (a run folder being resumed): a write still in
    progress elsewhere would lose its temporary file.

    Returns:
        What was removed.
    """
    # transferkit's .partial / .old are always folders: a user's own file named so is never touched
    found = [
        p for p in Path(folder).rglob("*")
        if _LEFTOVER.search(p.name) and (p.is_dir() or not p.name.endswith((".partial", ".old")))
    ]  # fmt: skip
    removed = []
    for path in sorted(found, key=lambda p: len(p.parts)):  # outermost first: a folder takes its contents
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
        else:
            continue  # inside a folder removed above
        removed.append(path)
    return removed


class DiscardFolder(Exception):  # noqa: N818  (a signal, not an error)
    """Raise inside a :func:`publish_folder` block to drop its folder and publish nothing (no error)."""


def _rename_dir(tmp: Path, final: Path) -> None:
    """Renames ``tmp`` to ``final``; across file systems, copies next to ``final`` first, then renames.

    What is renamed is fsynced first (files, sub-folders, the folder), and ``final``'s parent after.
    """
    fsync_tree(tmp)
    try:
        tmp.rename(final)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        staging = final.with_name(f".{final.name}.{os.getpid()}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(tmp, staging)
        fsync_tree(staging)
        staging.rename(final)
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(final.parent)


def move_into_place(tmp: str | Path, final: str | Path, if_exists: IfExists = "replace") -> Path:
    """Renames the finished folder ``tmp`` to ``final``: the publish step of :func:`publish_folder`.

    For writers that stage several folders and keep one of them (``transferkit compress``); otherwise use
    :func:`publish_folder`. Every file and folder under ``tmp`` is fsynced before the rename and
    ``final``'s parent after it, so a published folder survives a power cut whole or not at all.

    Args:
        tmp: A complete folder, ideally beside ``final`` (one rename on one file system).
        final: The destination.
        if_exists: What to do when ``final`` already exists: ``"replace"`` it (moved aside, then removed
            once ``tmp`` is in place, so readers never see a half-deleted folder), ``"keep"`` it (``tmp``
            is dropped: someone else finished first), or ``"error"``.

    Returns:
        ``final`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: if ``final`` exists and ``if_exists`` is ``"error"``.
    """
    tmp, final = Path(tmp), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        _rename_dir(tmp, final)
        return final
    if if_exists == "error":
        raise FileExistsError(f"{final}: already exists")
    if if_exists == "keep":
        shutil.rmtree(tmp, ignore_errors=True)
        return final
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)  # left by a kill between the two renames below
    final.rename(old)
    _rename_dir(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


@contextlib.contextmanager
def publish_folder(
    final: str | Path, if_exists: IfExists = "replace", staging: str | Path | None = None
) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``final``; renames it to ``final`` when the block completes.

    If the block raises, the temporary folder is removed, ``final`` is left as it was and the error
    propagates; raising :class:`DiscardFolder` does the same without an error. A folder still named
    ``*.partial`` is therefore always a write that was cut short (a kill), and the next publish of the same
    ``final`` removes it.

    Args:
        final: The folder to publish.
        if_exists: What to do with an existing ``final`` (see :func:`move_into_place`); ``"error"`` is also
            checked before the block runs, so no work is wasted.
        staging: The temporary folder to write into (created if missing) instead of ``final.partial``:
            e.g. a process-named one, for writers that may run concurrently.

    Raises:
        FileExistsError: if ``final`` exists and ``if_exists`` is ``"error"``.

    Example:
        >>> with publish_folder(run_dir / "model") as tmp:  # doctest: +SKIP
        ...     model.save_pretrained(tmp)
        ...     tokenizer.save_pretrained(tmp)
    """
    final = Path(final)
    tmp = final.with_name(final.name + ".partial") if staging is None else Path(staging)
    try:
        if if_exists == "error" and final.exists():
            raise FileExistsError(f"{final}: already exists")
        final.parent.mkdir(parents=True, exist_ok=True)
        if staging is None:
            shutil.rmtree(tmp, ignore_errors=True)  # a write cut short by a kill
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            yield tmp
        except DiscardFolder:
            return
        move_into_place(tmp, final, if_exists)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a publish; what a failed block left otherwise
