"""A small generic registry: one per extensible thing (strategies, backbones, data sets).

Each entry is registered by one call at the bottom of its module. Names are validated and duplicates
refused so that the CLI can list every entry with a one-line description.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from transferkit.errors import RegistryError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered item: its name, a one-line description and the object itself."""

    name: str
    description: str
    obj: T
    extra: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Maps lower-case names to registered objects.

    Args:
        kind: What is registered ("strategy", "backbone", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T, description: str, **extra: Any) -> T:
        """Adds ``obj`` under ``name``; refuses duplicates, bad names and empty descriptions."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RegistryError(
                f"{self.kind} name {name!r} is malformed: use lower-case letters, digits, '-', '_' or '.'"
            )
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        if not description or not description.strip() or "\n" in description.strip():
            raise RegistryError(f"{self.kind} {name!r} needs a one-line description")
        self._entries[name] = Entry(name, description.strip(), obj, dict(extra))
        return obj

    def get(self, name: str) -> T:
        """Returns the object registered as ``name`` or raises a RegistryError naming close matches."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        """Returns the full entry registered as ``name``."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            known = ", ".join(sorted(self._entries))
            raise RegistryError(f"unknown {self.kind} {name!r}{hint}; known: {known}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)
