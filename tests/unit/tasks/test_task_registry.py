"""The task registry: one spec per task, read by the CLI, export, compress and fit."""

from __future__ import annotations

import importlib
import typing

import pytest

import transferkit
from transferkit.config import RunConfig, TaskConfig
from transferkit.errors import ConfigError, RegistryError
from transferkit.tasks import TASKS, TaskSpec, register_task, task_names, task_spec


def test_every_task_is_registered_once_with_a_spec() -> None:
    assert task_names() == [
        "generation",
        "image-classification",
        "text-classification",
        "token-classification",
    ]
    for entry in TASKS:
        spec = entry.obj
        assert isinstance(spec, TaskSpec) and spec.name == entry.name and spec.metric_keys
        assert callable(spec.fit) and callable(spec.load)
        if spec.onnx_exporter:
            module = importlib.import_module(spec.onnx_exporter)
            assert callable(module.export_onnx) and callable(module.load_onnx)
        if spec.config_section:
            assert spec.config_section in RunConfig.model_fields


def test_the_config_accepts_exactly_the_registered_tasks() -> None:
    accepted = typing.get_args(TaskConfig.model_fields["type"].annotation)
    assert sorted(accepted) == task_names()


def test_duplicate_tasks_are_refused() -> None:
    spec = task_spec("generation")
    with pytest.raises(RegistryError, match="already registered"):
        register_task(spec)


def test_refused_strategies_come_from_the_spec(tmp_path) -> None:
    spec = task_spec("generation")
    assert set(spec.refused_strategies) == {"head", "linear-probe", "lp-ft", "gradual"}
    with pytest.raises(ConfigError, match="does not apply to generation"):
        spec.check_strategy("lp-ft")
    spec.check_strategy("lora")  # no error
    with pytest.raises(ConfigError, match="strategy.name: 'head'"):
        transferkit.fit(train=str(tmp_path / "absent.jsonl"), task="generation", strategy="head")


def test_export_and_compress_read_the_spec() -> None:
    from transferkit.compression.export import exporter
    from transferkit.errors import RunError

    assert exporter("token-classification").__name__ == "transferkit.tasks.token_classification.onnx"
    with pytest.raises(RunError, match="exportable: text-classification, token-classification"):
        exporter("generation")
    assert [e.name for e in TASKS if e.obj.compressible] == ["text-classification"]
