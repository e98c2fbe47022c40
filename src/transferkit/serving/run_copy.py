"""A private copy of a run folder under the reload root, read without following one symbolic link.

Why: ``reload_target`` resolves the requested folder and checks that it lies under the root, but a loader
opens the run's files by path afterwards. Whoever can write inside the root could swap the folder (or its
``model/``) for a link out of the root in between, and the loader would follow it. Here every folder from
the root down to the run, and every entry of the run, is opened relative to its parent's descriptor with
``O_NOFOLLOW``: a link at any of them makes the open fail instead of being followed, so what is read is what
lies under the root at that moment. The files are copied from those descriptors into a folder only this
process can write (``mkdtemp``: mode 0700), the loader reads the copy, and the copy is deleted once the
model is loaded. A swap after the copy changes nothing the loader sees, and there is nothing to re-check.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transferkit.errors import RunError
from transferkit.serving.security import NotAllowed

log = logging.getLogger("transferkit.serving")

# what a finished run keeps only for resuming and for its logs (each task's fit writes run_dir/"checkpoints"
# and run_dir/"logs"); no loader reads them, and checkpoints hold several copies of the weights
NOT_COPIED = frozenset({"checkpoints", "logs"})
MAX_DEPTH = 16  # folders below the run; a run has two levels (model/, adapter/)
_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: an entry swapped for a FIFO after its stat opens at once instead of hanging (and is skipped)
_FILE = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def supported() -> bool:
    """Whether this platform opens files relative to a folder's descriptor without following links."""
    return (
        hasattr(os, "O_NOFOLLOW")
        and hasattr(os, "O_DIRECTORY")
        and os.open in os.supports_dir_fd
        and os.stat in os.supports_dir_fd
        and os.scandir in os.supports_fd
    )


class _Link(Exception):
    """A link (or a non-folder) where a folder of the run was checked to be; carries the relative name."""


@contextmanager
def private_copy(root: str | Path, folder: str | Path) -> Iterator[Path]:
    """Copies ``folder`` (a resolved path under ``root``) into a private temporary folder; yields the copy.

    The copy keeps the folder's name (``<tmp>/<name>``), holds its regular files and sub-folders except
    :data:`NOT_COPIED` at its top, and is deleted on exit.

    Raises:
        NotAllowed: ``folder`` is not under ``root``, or a link (or something that is no folder) is found at
            any step from the root down or anywhere inside the run; the log names it, the message does not.
        RunError: the folder vanished after it was checked.
    """
    real_root = Path(os.path.realpath(root))
    folder = Path(folder)
    try:
        parts = folder.relative_to(real_root).parts
    except ValueError:
        raise NotAllowed("that folder is not allowed") from None
    if not supported():
        log.warning("reload refused: this platform cannot open a folder without following links")
        raise NotAllowed("that folder is not allowed")
    if any(p in ("", ".", "..") for p in parts):  # a resolved path has none; refuse rather than interpret
        raise NotAllowed("that folder is not allowed")
    tmp = Path(tempfile.mkdtemp(prefix="transferkit-reload-"))
    try:
        yield _copy_run(real_root, parts, tmp / (folder.name or "run"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_run(real_root: Path, parts: tuple[str, ...], copy: Path) -> Path:
    """Opens the run folder step by step from the root and copies it to ``copy``; see :func:`private_copy`."""
    try:
        fd = os.open(real_root, _DIR)  # the root itself is the operator's (--reload-root)
        try:
            for i, part in enumerate(parts):
                child = _open_folder(fd, part, "/".join(parts[: i + 1]))
                os.close(fd)
                fd = child
            _copy_folder(fd, copy, "", 0)
        finally:
            os.close(fd)
    except _Link as link:
        log.warning("reload refused: %s under the reload root %s is a link or not a folder", link, real_root)
        raise NotAllowed("that folder is not allowed") from None
    except FileNotFoundError:
        raise RunError(f"{copy.name}: the folder or a file of it vanished while it was copied") from None
    return copy


def _open_folder(parent: int, name: str, where: str) -> int:
    """Opens folder ``name`` of the folder open as ``parent`` without following a link."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError:
        raise _Link(where) from None  # ELOOP (a link), ENOTDIR (a file), EMLINK (a link, on BSDs)


def _copy_folder(fd: int, dest: Path, where: str, depth: int) -> None:
    """Copies the entries of the folder open as ``fd`` into ``dest`` (``where``: its path in the run)."""
    if depth > MAX_DEPTH:
        raise _Link(f"{where} (folders nested deeper than {MAX_DEPTH})")
    dest.mkdir(mode=0o700)
    with os.scandir(fd) as entries:
        names = sorted(e.name for e in entries)
    for name in names:
        if depth == 0 and name in NOT_COPIED:
            continue
        inner = f"{where}/{name}" if where else name
        mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise _Link(inner)
        if stat.S_ISDIR(mode):
            child = _open_folder(fd, name, inner)
            try:
                _copy_folder(child, dest / name, inner, depth + 1)
            finally:
                os.close(child)
        elif stat.S_ISREG(mode):
            _copy_file(fd, name, dest / name, inner)
        # FIFOs, sockets and devices are never opened: no loader reads one


def _copy_file(parent: int, name: str, dest: Path, where: str) -> None:
    try:
        fd = os.open(name, _FILE, dir_fd=parent)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError:
        raise _Link(where) from None  # swapped for a link since its stat
    with open(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return  # swapped for a FIFO or a device since its stat: not a file of the run
        with open(dest, "xb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


__all__ = ["NOT_COPIED", "private_copy", "supported"]
