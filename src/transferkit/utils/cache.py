"""Where transferkit keeps what it downloads or builds once: catalog data sets, package archives, backbones.

One root for every cache, read by the data catalog and by the backbones alike (so neither package imports the
other for it).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$TRANSFERKIT_CACHE`` if set, else ``~/.cache/transferkit``."""
    return Path(os.environ.get("TRANSFERKIT_CACHE") or "~/.cache/transferkit").expanduser()
