"""Atomic file writes.

Every artefact transferkit writes (metrics JSON, plots, checkpoints) goes to a temporary file in the
destination's folder first and is then moved into place with :func:`os.replace`. A crash or error halfway
therefore never leaves a truncated file behind: readers see either the old file or the complete new one.
The temporary file lives in the same folder because ``os.replace`` is only atomic within one file system.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def atomic_save_via(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Lets ``writer`` write a temporary file next to ``path``, then renames it onto ``path``.

    Use this for libraries that write files themselves (``fig.savefig``, ``torch.save``,
    ``safetensors.torch.save_file``). The parent folder is created if needed. If ``writer`` raises, the
    temporary file is removed, an existing file at ``path`` is left untouched and the error propagates.

    Args:
        path: Final destination.
        writer: Called once with the temporary path (same folder and suffix as ``path``); must write the
            complete file there.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> atomic_save_via("model.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        writer(tmp)
        _fsync_file(tmp)
        _match_permissions(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Writes ``text`` to ``path`` atomically (temporary file, flush, fsync, rename).

    Args:
        path: Final destination; its parent folder is created if needed.
        text: The full file contents.
        encoding: Text encoding.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding=encoding, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        tmp = Path(handle.name)
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
    try:
        _match_permissions(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Serialises ``obj`` as indented JSON and writes it to ``path`` atomically.

    The object is serialised *before* anything touches the disk, so an unserialisable object leaves an
    existing file intact.

    Args:
        path: Final destination.
        obj: A JSON-serialisable object (plain dicts, lists, str, int, float, bool, None).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``obj`` contains NaN or infinity (which would be invalid JSON).
        TypeError: If ``obj`` contains something JSON cannot represent.
    """
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")
