"""``transferkit env``: one screen of what transferkit uses on this machine."""

from __future__ import annotations

import json

from transferkit.cli.main import main


def test_env_json_names_the_cpu_the_precision_auto_picks_and_matmul_speeds(capsys) -> None:
    assert main(["env", "--json", "--seconds", "0.02"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cpu"]["cores"] >= 1 and info["cpu"]["model"]
    assert info["precision_auto"]["name"] in ("fp32", "bf16", "fp16") and info["precision_auto"]["reason"]
    assert info["matmul_gflops"]["fp32"] > 0 and info["matmul_gflops"]["bf16"] > 0
    assert info["device"] == "cpu" or info["gpus"]


def test_env_table_without_timings(capsys) -> None:
    assert main(["env", "--no-measure"]) == 0
    out = capsys.readouterr().out
    assert "precision auto picks" in out and "ISA" in out and "GFLOP/s" not in out
