"""transferkit.hardware: what the machine has, and what ``training.precision: auto`` becomes on it."""

from __future__ import annotations

import pytest
import torch

from transferkit import hardware
from transferkit.errors import ConfigError

XEON = "fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile"
EPYC_ZEN4 = "fpu sse2 avx2 avx512f avx512_vnni avx512_bf16"
EPYC_AVX2 = "fpu sse2 avx2 fma"


def _cpu(monkeypatch, flags: str, model: str = "Test CPU") -> None:
    text = f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n"
    monkeypatch.setattr(hardware, "_cpuinfo_text", lambda: text)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    hardware.cpu_info.cache_clear()
    monkeypatch.delenv(hardware.PIN_ENV, raising=False)


@pytest.fixture(autouse=True)
def _fresh_cpu_info():
    hardware.cpu_info.cache_clear()
    yield
    hardware.cpu_info.cache_clear()


@pytest.mark.parametrize(
    ("flags", "isa", "auto"),
    [
        (XEON, "AVX2 AVX-512 VNNI AVX512-BF16 AMX", "bf16"),
        (EPYC_ZEN4, "AVX2 AVX-512 VNNI AVX512-BF16", "bf16"),
        (EPYC_AVX2, "AVX2", "fp32"),
    ],
)
def test_auto_picks_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, flags, isa, auto) -> None:
    _cpu(monkeypatch, flags, "Some CPU 9000")
    info = hardware.cpu_info()
    assert info.model == "Some CPU 9000" and info.isa() == isa
    chosen = hardware.resolve_precision("auto", "cpu")
    assert chosen.name == auto and chosen.requested == "auto"
    assert "Some CPU 9000" in chosen.reason and isa in chosen.reason
    assert chosen.mixed == ("no" if auto == "fp32" else "bf16")


def test_explicit_settings_win_and_say_when_bf16_is_emulated(monkeypatch) -> None:
    _cpu(monkeypatch, EPYC_AVX2)
    assert hardware.resolve_precision("fp32", "cpu").name == "fp32"
    bf16 = hardware.resolve_precision("bf16", "cpu")
    assert bf16.name == "bf16" and "emulated" in bf16.reason and bf16.dtype == torch.bfloat16
    _cpu(monkeypatch, XEON)
    assert "emulated" not in hardware.resolve_precision("bf16", "cpu").reason


def test_fp16_needs_cuda_and_unknown_names_are_refused(monkeypatch) -> None:
    _cpu(monkeypatch, XEON)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        hardware.resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="'fp8' is not one of auto, fp32, bf16, fp16"):
        hardware.resolve_precision("fp8", "cpu")


def test_the_pin_variable_fixes_what_auto_means(monkeypatch) -> None:
    _cpu(monkeypatch, XEON)
    monkeypatch.setenv(hardware.PIN_ENV, "fp32")
    pinned = hardware.resolve_precision("auto", "cpu")
    assert pinned.name == "fp32" and hardware.PIN_ENV in pinned.reason
    assert hardware.resolve_precision("bf16", "cpu").name == "bf16"  # an explicit setting is not pinned
    monkeypatch.setenv(hardware.PIN_ENV, "half")
    with pytest.raises(ConfigError, match="TRANSFERKIT_PRECISION='half'"):
        hardware.resolve_precision("auto", "cpu")


def test_cuda_devices_get_bf16_or_fp16_with_loss_scaling(monkeypatch) -> None:
    monkeypatch.delenv(hardware.PIN_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Old GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.resolve_precision("auto", "cuda").name == "fp16"
    with pytest.raises(ConfigError, match="does not support bf16"):
        hardware.resolve_precision("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.resolve_precision("auto", "cuda").name == "bf16"
    assert hardware.resolve_precision("fp16", "cuda").name == "fp16"


def test_autocast_runs_matmuls_in_bf16_and_is_a_no_op_for_fp32() -> None:
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with hardware.autocast(hardware.Precision("bf16", "bf16", "")):
        assert (a @ b).dtype == torch.bfloat16
    with hardware.autocast("fp32"):
        assert (a @ b).dtype == torch.float32
    with hardware.autocast(None):
        assert (a @ b).dtype == torch.float32


def test_matmul_throughput_is_measured_for_each_kind() -> None:
    for kind in ("fp32", "bf16"):
        assert hardware.matmul_gflops(kind, n=128, seconds=0.05) > 0
    int8 = hardware.matmul_gflops("int8", n=128, seconds=0.05)
    assert int8 is None or int8 > 0  # None where this torch build has no int8 matmul kernel


def test_describe_and_the_benchmark_header_name_the_hardware(monkeypatch) -> None:
    _cpu(monkeypatch, EPYC_ZEN4, "AMD EPYC 9B14")
    info = hardware.describe(measure=True, seconds=0.02)
    assert info["cpu"]["model"] == "AMD EPYC 9B14" and info["cpu"]["native_bf16"] is True
    assert info["precision_auto"]["name"] == "bf16"
    assert set(info["matmul_gflops"]) == {"fp32", "bf16", "int8"}
    line = hardware.header(info)
    assert "AMD EPYC 9B14" in line and "AVX512-BF16" in line and "precision auto -> bf16" in line
    assert "matmul GFLOP/s fp32" in line


def test_precision_of_an_accelerator_not_made_by_transferkit_is_fp32() -> None:
    assert hardware.precision_of(object()).name == "fp32"
    assert hardware.precision_of(None).name == "fp32"


def test_frozen_passes_use_a_low_precision_copy_and_leave_the_model_alone() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert hardware.low_precision_copy(model, "fp32") is model
    bf16 = hardware.Precision("bf16", "bf16", "")
    copy = hardware.low_precision_copy(model, bf16)
    assert copy is not model
    assert copy[0].weight.dtype == copy[2].weight.dtype == torch.bfloat16  # matmul weights cast once
    assert copy[1].weight.dtype == torch.float32  # norms stay as autocast leaves them
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.randn(4, 8)
    with hardware.autocast(bf16):
        assert torch.equal(copy(x), model(x))  # the same numbers as autocast on the fp32 model
