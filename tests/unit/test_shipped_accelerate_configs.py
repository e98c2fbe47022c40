"""Every Accelerate config shipped under configs/accelerate/ loads as Accelerate's own ClusterConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

FILES = sorted((Path(__file__).resolve().parents[2] / "configs" / "accelerate").glob("*.yaml"))


def test_there_are_accelerate_configs() -> None:
    assert {f.name for f in FILES} >= {"ddp_multi_gpu.yaml", "fsdp.yaml", "cpu_two_processes.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_accelerate_config_loads(path: Path) -> None:
    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes >= cfg.num_machines >= 1
    assert str(cfg.distributed_type).split(".")[-1] in {"MULTI_GPU", "MULTI_CPU", "FSDP"}
