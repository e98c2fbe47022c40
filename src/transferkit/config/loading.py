"""Loading a run configuration: a YAML file, then the CLI's flags, then ``key.path=value`` overrides, merged
and validated in one pass that reports *every* error at once, each with its field path.

Strategy settings sit beside ``strategy.name`` and are defined by each strategy, in the strategies package,
which sits above this one (it imports the schema). So this module never imports it: the strategies package
registers its check here when it is imported (:func:`register_strategy_check`), and :func:`build_config`
reports its problems together with the schema's. The entry points (``transferkit.load_config``,
``transferkit.fit`` and so the CLI) import the strategies; without them only the schema is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from transferkit.config.schema import RunConfig, StrategyConfig
from transferkit.errors import ConfigError

StrategyCheck = Callable[[StrategyConfig], list[str]]
"""Returns the problems with ``strategy.*`` as ``"strategy.FIELD: message"`` lines (none when valid)."""

_strategy_checks: list[StrategyCheck] = []


def register_strategy_check(check: StrategyCheck) -> None:
    """Adds a check of ``strategy.*`` that :func:`build_config` runs beside the schema's validation.

    The strategies package registers its own (an unknown name, settings the strategy does not accept) when
    it is imported; registering the same check again changes nothing.
    """
    if check not in _strategy_checks:
        _strategy_checks.append(check)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def _yaml_problem(err: yaml.YAMLError) -> str:
    """The one-line reason of a YAML error (PyYAML's own message spans several lines)."""
    return str(getattr(err, "problem", None) or err).splitlines()[0]


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turns ``["training.epochs=2", "strategy.name=head"]`` into a nested dict (values parsed as YAML).

    Raises:
        ConfigError: for an item that is not ``key.path=value``, an empty key, or a value that is not YAML
            (``training.epochs=[``); quote a value meant as text (``'data.train="[1].csv"'``).
    """
    tree: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or "" in key.split("."):
            raise ConfigError(f"override {item!r}: {key!r} is not a field path like training.epochs")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)}); quote it to give a text"
            ) from None
        _set_path(tree, key, value)
    return tree


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Returns ``base`` updated recursively with ``update`` (neither is modified)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (see `transferkit config explain`)"
        lines.append(f"{path}: {msg}")
    return lines


def build_config(tree: dict[str, Any], source: str = "config") -> RunConfig:
    """Validates a nested dict into a RunConfig, strategy settings included (see :func:`register_strategy_check`).

    Raises:
        ConfigError: listing every invalid field with its dotted path.
    """
    problems: list[str] = []
    cfg = None
    try:
        cfg = RunConfig.model_validate(tree)
    except ValidationError as err:
        problems += _format_errors(err)
    strategy = tree.get("strategy") or {}
    if isinstance(strategy, dict) and _strategy_checks:
        section = (
            StrategyConfig.model_construct(**strategy) if "name" in strategy else StrategyConfig(**strategy)
        )
        for check in _strategy_checks:
            problems += check(section)
    if problems or cfg is None:
        raise ConfigError(f"{source}: {len(problems)} error(s): " + "; ".join(problems))
    return cfg


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None
) -> RunConfig:
    """Loads a YAML run file, applies ``key.path=value`` overrides and validates.

    Args:
        path: YAML file, or None for defaults.
        overrides: ``key.path=value`` strings applied after the file.
        base: a nested dict applied between the file and the overrides (the CLI's flags).

    Returns:
        The validated :class:`RunConfig`.

    Raises:
        ConfigError: for a missing or unparsable file, or any invalid field (all reported at once).

    Example:
        >>> cfg = load_config(None, ["data.dataset=rotten_tomatoes", "strategy.name=head"])
        >>> cfg.strategy.name
        'head'
    """
    tree: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{p}: not UTF-8 text (byte {err.start}: {err.reason}); save the config as UTF-8"
            ) from None
        except OSError as err:
            raise ConfigError(f"{p}: cannot read the config ({err.strerror or err})") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{p}{where}: not valid YAML ({_yaml_problem(err)})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{p}: expected a mapping of sections (data, backbone, ...), got {type(loaded).__name__}"
            )
        tree = loaded
    tree = deep_merge(tree, base or {})
    tree = deep_merge(tree, parse_overrides(overrides))
    return build_config(tree, source)


def explain(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """Lists ``(field path, default, description)`` for every field, recursively."""
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and ann is not StrategyConfig:
            rows.append((path, "", field.description or ""))
            rows.extend(explain(ann, path + "."))
        elif ann is StrategyConfig:
            rows.append((path, "", field.description or ""))
            rows.extend(explain(StrategyConfig, path + "."))
        else:
            default = field.get_default(call_default_factory=True)
            rows.append((path, repr(default), field.description or ""))
    return rows
