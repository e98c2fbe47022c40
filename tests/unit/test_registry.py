"""Registry: registration rules, lookups with close-match hints, sorted listing."""

from __future__ import annotations

import pytest

from transferkit.errors import RegistryError
from transferkit.registry import Entry, Registry


@pytest.fixture
def reg() -> Registry[int]:
    return Registry("widget")


def test_register_and_get(reg: Registry[int]) -> None:
    obj = object()
    assert reg.register("alpha", obj, "the first", color="red") is obj
    assert reg.get("alpha") is obj
    assert "alpha" in reg and "beta" not in reg
    entry = reg.entry("alpha")
    assert isinstance(entry, Entry)
    assert (entry.name, entry.description, entry.extra) == ("alpha", "the first", {"color": "red"})


def test_description_is_stripped(reg: Registry[int]) -> None:
    reg.register("a", 1, "  one line\n")
    assert reg.entry("a").description == "one line"


def test_duplicate_refused(reg: Registry[int]) -> None:
    reg.register("alpha", 1, "first")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("alpha", 2, "second")
    assert reg.get("alpha") == 1


@pytest.mark.parametrize("name", ["", "Alpha", "with space", "-lead", ".dot", "a/b", "naïve"])
def test_malformed_names_refused(reg: Registry[int], name: str) -> None:
    with pytest.raises(RegistryError, match="malformed"):
        reg.register(name, 1, "desc")
    assert reg.names() == []


@pytest.mark.parametrize("name", ["a", "0day", "mini-lm.v2_x"])
def test_wellformed_names_accepted(reg: Registry[int], name: str) -> None:
    reg.register(name, 1, "desc")
    assert reg.names() == [name]


def test_name_with_trailing_newline_refused(reg: Registry[int]) -> None:
    with pytest.raises(RegistryError, match="malformed"):
        reg.register("alpha\n", 1, "desc")


@pytest.mark.parametrize("description", ["", "two\nlines"])
def test_description_must_be_one_line(reg: Registry[int], description: str) -> None:
    with pytest.raises(RegistryError, match="one-line description"):
        reg.register("alpha", 1, description)
    assert "alpha" not in reg


def test_blank_description_refused(reg: Registry[int]) -> None:
    with pytest.raises(RegistryError, match="one-line description"):
        reg.register("alpha", 1, "   ")


def test_unknown_name_lists_close_matches_and_all_names(reg: Registry[int]) -> None:
    for name in ("alpha", "alpine", "zebra"):
        reg.register(name, 1, name)
    with pytest.raises(RegistryError) as info:
        reg.get("alpah")
    msg = str(info.value)
    assert "unknown widget 'alpah'" in msg
    hint = msg.split("did you mean ")[1].split("?")[0]
    assert "alpha" in hint and "zebra" not in hint
    assert msg.endswith("known: alpha, alpine, zebra")


def test_unknown_name_without_close_match_has_no_hint(reg: Registry[int]) -> None:
    reg.register("alpha", 1, "a")
    with pytest.raises(RegistryError) as info:
        reg.get("qqqqqq")
    assert "did you mean" not in str(info.value)


def test_iteration_is_sorted(reg: Registry[int]) -> None:
    for name in ("charlie", "alpha", "bravo"):
        reg.register(name, 1, name)
    assert [e.name for e in reg] == ["alpha", "bravo", "charlie"]
    assert reg.names() == ["alpha", "bravo", "charlie"]


def test_shipped_registries_are_listable() -> None:
    from transferkit.backbones import BACKBONES
    from transferkit.data import DATASETS
    from transferkit.strategies import STRATEGIES

    for registry in (BACKBONES, DATASETS, STRATEGIES):
        entries = list(registry)
        assert entries, registry.kind
        assert [e.name for e in entries] == sorted(e.name for e in entries)
        assert all(e.description and "\n" not in e.description for e in entries)
    assert {"full", "head"} <= set(STRATEGIES.names())
    assert {"minilm-l6", "tiny-bert"} <= set(BACKBONES.names())
