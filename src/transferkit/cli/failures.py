"""The one line the CLI prints for a failure that is the user's input or the machine's state, not a bug.

transferkit's own errors (:class:`~transferkit.errors.TransferkitError`) already are one such line. This
module names the others the library lets through: any OSError (a missing folder, a permission, a full
disk), a YAML or JSON file that does not parse, text that is not in its encoding, and an image that would
decode to more pixels than Pillow allows. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys

# errno -> what to do about it (the system's own wording, ``strerror``, comes before it)
OS_ADVICE = {
    errno.ENOENT: "check the path (the file or one of its folders does not exist)",
    errno.ENOTDIR: "check the path (a part of it is a file, not a folder)",
    errno.EISDIR: "give a file, not a folder",
    errno.EEXIST: "choose another path (nothing is overwritten)",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "write somewhere else (the file system is read-only)",
    errno.ENOSPC: "free some disk space or write somewhere else",
    errno.EDQUOT: "free some space under your quota or write somewhere else",
    errno.EFBIG: "write somewhere else (the file is too large for this file system)",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
    errno.ENFILE: "close other programs or raise the open-file limit",
    errno.ENOMEM: "free some memory or use a smaller batch",
    errno.EIO: "check the disk (an input/output error)",
}


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _os_line(err: OSError) -> str:
    where = err.filename if err.filename is not None else None
    if err.filename2 is not None:
        where = f"{err.filename} -> {err.filename2}"
    reason = err.strerror or _first_line(err) or type(err).__name__
    advice = OS_ADVICE.get(err.errno or -1)
    text = f"{where}: {reason}" if where else reason
    return f"{text}; {advice}" if advice else text


def _yaml_line(err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    where = ""
    if mark is not None:
        name = getattr(mark, "name", "") or ""
        where = f"{name if not name.startswith('<') else 'YAML'} line {mark.line + 1}: "
    problem = _first_line(getattr(err, "problem", None) or err)
    return f"{where}not valid YAML ({problem}); fix the file"


def _is(err: BaseException, module: str, name: str) -> bool:
    """``isinstance`` against ``module.name`` without importing ``module`` (it is loaded if it raised)."""
    owner = sys.modules.get(module)
    kind = getattr(owner, name, None) if owner is not None else None
    return isinstance(kind, type) and isinstance(err, kind)


# torch.save's messages when the disk fills or a write fails (a RuntimeError, not an OSError)
_TORCH_WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed", "unexpected pos")
_OS_ERROR = re.compile(r"os error (\d+)")


def _io_line(message: str, what: str) -> str:
    """A library's I/O failure that is not an OSError (safetensors, torch.save): its errno when it says one."""
    found = _OS_ERROR.search(message)
    if found:
        code = int(found.group(1))
        reason = os.strerror(code)
        advice = OS_ADVICE.get(code)
        return f"cannot write {what}: {reason}" + (f"; {advice}" if advice else "")
    if "write" in message.lower():
        return f"cannot write {what} ({_first_line(message)}); check the free disk space and the path"
    return f"cannot read {what} ({_first_line(message)}); the file may be damaged: restore it or re-create it"


def describe(err: BaseException) -> str | None:
    """The one line for ``err`` (without ``error:``), or None for an exception that is a bug.

    Example:
        >>> describe(FileNotFoundError(2, "No such file or directory", "data/train.csv"))
        'data/train.csv: No such file or directory; check the path (the file or one of its folders does not exist)'
    """
    if isinstance(err, OSError):
        return _os_line(err)
    if isinstance(err, json.JSONDecodeError):  # a ValueError: checked before anything broader
        return f"not valid JSON (line {err.lineno}: {err.msg}); fix or restore the file"
    if isinstance(err, UnicodeDecodeError):
        return f"text is not {err.encoding} (byte {err.start}: {err.reason}); save the file as UTF-8"
    if isinstance(err, UnicodeError):
        return f"cannot encode or decode text ({_first_line(err)})"
    if _is(err, "yaml", "YAMLError"):
        return _yaml_line(err)
    if _is(err, "PIL.Image", "DecompressionBombError"):
        return f"image too large to decode ({_first_line(err)}); shrink it"
    if _is(err, "safetensors", "SafetensorError") or _is(
        err, "safetensors._safetensors_rust", "SafetensorError"
    ):
        return _io_line(str(err), "a safetensors file")
    if isinstance(err, RuntimeError) and any(m in str(err) for m in _TORCH_WRITE_FAILED):
        return _io_line(str(err), "a PyTorch file")
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller batch (training.batch_size) or a smaller input"
    return None


__all__ = ["OS_ADVICE", "describe"]
