"""load_config: defaults, YAML-typed overrides, every error reported at once with its path, explain()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import transferkit.strategies  # noqa: F401  registers the strategy.* check, as every entry point does
from transferkit.config import RunConfig, TrainingConfig, explain, load_config, parse_overrides
from transferkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DATA = ["data.train=train.csv"]


def _error(overrides: list[str], path: str | Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def test_defaults() -> None:
    cfg = load_config(None, DATA)
    assert isinstance(cfg, RunConfig)
    assert cfg.data.train == "train.csv"
    assert cfg.backbone.name == "minilm-l6"
    assert cfg.strategy.name == "auto"
    assert cfg.task.problem == "single_label"
    assert cfg.training.epochs is None and cfg.training.batch_size is None  # the data-derived schedule
    assert cfg.training.seed == 42
    assert cfg.output.dir is None


def test_no_data_is_refused() -> None:
    assert "no data" in _error([])


def test_overrides_are_parsed_as_yaml() -> None:
    cfg = load_config(
        None,
        [*DATA, "training.epochs=2", "training.batch_size=8", "strategy.name=head", "strategy.cache=disk"],
    )
    assert cfg.training.epochs == 2 and isinstance(cfg.training.epochs, int | float)
    assert cfg.training.batch_size == 8 and isinstance(cfg.training.batch_size, int)
    assert cfg.strategy.name == "head"
    assert cfg.strategy.model_extra == {"cache": "disk"}


def test_parse_overrides_nests_and_types() -> None:
    tree = parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]", "e=", "f=true"])
    assert tree == {"a": {"b": 1, "c": "x"}, "d": [1, 2], "e": None, "f": True}


@pytest.mark.parametrize("bad", ["noequals", "=1"])
def test_malformed_override(bad: str) -> None:
    assert "key.path=value" in _error([*DATA, bad])


def test_override_through_a_value_is_refused() -> None:
    assert "not a section" in _error([*DATA, "training.epochs=2", "training.epochs.x=1"])


def test_strategy_cache_off_override() -> None:
    from transferkit.strategies import strategy_settings

    cfg = load_config(None, [*DATA, "strategy.name=head", "strategy.cache=off"])
    assert strategy_settings(cfg.strategy).cache == "off"  # YAML reads a bare `off` as False


@pytest.mark.parametrize("override", ["strategy.name=", "strategy.name=1"])
def test_non_string_strategy_name(override: str) -> None:
    assert "strategy.name" in _error([*DATA, override])


def test_every_error_reported_at_once_with_paths() -> None:
    msg = _error(
        [
            *DATA,
            "training.batch_size=abc",  # bad type
            "training.learning_rate=-1",  # out of range
            "data.validation_size=1.5",  # out of range
            "foo.bar=1",  # unknown top-level key
            "training.epoch=2",  # unknown field in a section
            "strategy.cache=disk",  # a setting the (default) auto strategy does not have
        ]
    )
    assert "6 error(s)" in msg
    for path in (
        "training.batch_size",
        "training.learning_rate",
        "data.validation_size",
        "foo",
        "training.epoch",
        "strategy.cache",
    ):
        assert f"{path}:" in msg, path
    assert "unknown field" in msg
    assert "unknown setting for strategy 'auto'" in msg


def test_unknown_strategy_has_a_hint_and_other_errors_still_show() -> None:
    msg = _error([*DATA, "strategy.name=heda", "training.batch_size=0"])
    assert "2 error(s)" in msg
    assert "strategy.name:" in msg and "did you mean head" in msg
    assert "training.batch_size:" in msg


# How each entry point gets the strategies loaded, so that load_config checks strategy.* (config never
# imports them): run in a fresh interpreter, where nothing else has imported the strategies yet.
ENTRY_POINTS = {
    "transferkit.load_config": "import transferkit\nload = transferkit.load_config",
    "transferkit.api (fit, the CLI)": "import transferkit.api\nfrom transferkit.config import load_config as load",
}


@pytest.mark.parametrize("setup", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_entry_points_check_strategy_settings(setup: str) -> None:
    code = "\n".join(
        [
            "import sys",
            "import transferkit.config",
            "assert 'transferkit.strategies' not in sys.modules, 'the config imported the strategies'",
            setup,
            "from transferkit.errors import ConfigError",
            "try:",
            "    load(None, ['data.train=x.csv', 'strategy.name=heda', 'training.batch_size=0'])",
            "except ConfigError as err:",
            "    print(err)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "2 error(s)" in out and "did you mean head" in out and "training.batch_size:" in out


def test_dataset_and_train_together_are_refused() -> None:
    msg = _error(["data.dataset=rotten_tomatoes", "data.train=train.csv"])
    assert "data:" in msg and "not both" in msg


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    msg = _error([], missing)
    assert str(missing) in msg and "not found" in msg


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train: a.csv\n\tseed: 1\n")  # a tab on line 3
    msg = _error([], path)
    assert msg.startswith(f"{path} line 3:")
    assert "not valid YAML" in msg


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert "expected a mapping" in _error([], path)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  train: a.csv\ntraining:\n  epochs: 5\n  seed: 3\n")
    cfg = load_config(path, ["training.epochs=1"], base={"training": {"seed": 7, "epochs": 9}})
    assert cfg.training.epochs == 1  # overrides > base > file
    assert cfg.training.seed == 7
    assert cfg.data.train == "a.csv"


def _leaf_paths(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _leaf_paths(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def test_explain_describes_every_field() -> None:
    rows = explain()
    for path, _default, description in rows:
        assert description.strip(), f"{path} has no description"
    paths = {path for path, _, _ in rows}
    assert len(paths) == len(rows)  # no field listed twice
    dumped = load_config(None, DATA).model_dump()
    missing = _leaf_paths(dumped) - paths
    assert not missing, f"fields absent from explain(): {sorted(missing)}"


def test_explain_defaults_match_the_model() -> None:
    defaults = {path: default for path, default, _ in explain()}
    assert defaults["training.epochs"] == repr(TrainingConfig().epochs)
    assert defaults["backbone.name"] == repr("minilm-l6")


SHIPPED_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_folder_is_not_empty() -> None:
    assert SHIPPED_CONFIGS, f"no YAML under {REPO / 'configs'}"


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files named by a config (data/train.csv) are read at fit time, never while validating:
    # load from an empty folder to prove it.
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path)
    assert cfg.data.dataset or cfg.data.train
