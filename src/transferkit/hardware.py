"""What this machine has, and the numeric precision transferkit uses on it.

``training.precision: auto`` becomes bf16 where the hardware runs bf16 matmuls natively (a CPU with AMX-BF16
or AVX512-BF16, a CUDA device that supports bf16), fp16 with loss scaling on older CUDA devices, and fp32
otherwise. Why these rules: on a 2-core Xeon with AMX a 2048x2048 matmul ran at 310 GFLOP/s in fp32 and 1,871
in bf16 (6x), and on a 2-core AMD EPYC with AVX512-BF16 (no AMX) at 80 vs 219 GFLOP/s (2.7x). A CPU without
native bf16 (AVX2 only) converts in software and gains nothing, so ``auto`` keeps fp32 there (bf16 still runs
when asked, for a check of what a bf16 machine would do).

:func:`describe` gathers what ``transferkit env`` prints and every benchmark's header starts with
(:func:`header`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from transferkit.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# what ``auto`` becomes where set: one precision whatever the machine (the test suite pins fp32 with it, so
# results do not depend on which kind of CPU ran them; CI, or a team comparing runs across machines, may too)
PIN_ENV = "TRANSFERKIT_PRECISION"
# the cpuinfo flags that matter here, in the order they are printed
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` is fp32, bf16 or fp16; ``requested`` what the setting said."""

    name: str
    requested: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES.get(self.name, torch.float32)

    @property
    def mixed(self) -> str:
        """Accelerate's ``mixed_precision`` value."""
        return "no" if self.name == "fp32" else self.name

    def record(self) -> dict:
        """``metrics.json`` -> ``training.precision``."""
        return asdict(self)


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    torch_threads: int
    capability: str  # what torch's kernels were built to use here: DEFAULT, AVX2, AVX512, AVX512_BF16, AMX...
    flags: tuple[str, ...] = field(default_factory=tuple)  # the ISA_FLAGS this CPU has

    @property
    def native_bf16(self) -> bool:
        return "amx_bf16" in self.flags or "avx512_bf16" in self.flags

    def isa(self) -> str:
        """Human-readable ISA summary, e.g. ``AVX2 AVX-512 VNNI AVX512-BF16`` or ``AVX2 AVX-512 AMX``."""
        names = []
        flags = set(self.flags)
        if "avx2" in flags:
            names.append("AVX2")
        if "avx512f" in flags:
            names.append("AVX-512")
        if flags & {"avx512_vnni", "avx_vnni"}:
            names.append("VNNI")
        if "avx512_bf16" in flags:
            names.append("AVX512-BF16")
        if flags & {"amx_bf16", "amx_int8", "amx_tile"}:
            names.append("AMX")
        return " ".join(names) or "baseline x86-64 / other"


def _cpuinfo_text() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), read now."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (Linux reads ``/proc/cpuinfo``; elsewhere only what ``platform`` and torch say)."""
    text = _cpuinfo_text()
    model, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    cores = usable_cores()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch builds
        capability = "unknown"
    if "AMX" in capability.upper():  # torch saw AMX even where cpuinfo was not readable
        flags.add("amx_bf16")
    return CpuInfo(
        model, cores, torch.get_num_threads(), capability, tuple(f for f in ISA_FLAGS if f in flags)
    )


def gpus() -> list[dict]:
    """One entry per CUDA device: name, memory (GiB), compute capability, bf16 support."""
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({
            "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}", "bf16": p.major >= 8,
        })  # fmt: skip
    return out


def device_type() -> str:
    """``cuda``, ``xpu``, ``mps`` or ``cpu``: where :func:`~transferkit.training.loop.make_accelerator` runs."""
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return "xpu"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(requested: str = "auto", device: str | None = None) -> Precision:
    """What ``training.precision`` (or ``serve --precision``) means on this machine.

    Raises:
        ConfigError: for an unknown name, or fp16 without a CUDA device (CPU autocast has no fp16 loss scaling).
    """
    device = device or device_type()
    if requested not in PRECISIONS:
        raise ConfigError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    pinned = os.environ.get(PIN_ENV, "").strip()
    if requested == "auto" and pinned:
        if pinned not in PRECISIONS[1:]:
            raise ConfigError(
                f"{PIN_ENV}={pinned!r} is not one of {', '.join(PRECISIONS[1:])}; unset it or fix it"
            )
        chosen = resolve_precision(pinned, device)
        return Precision(chosen.name, requested, f"auto: {PIN_ENV}={pinned} ({chosen.reason})")
    if device == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(0)
        if requested == "auto":
            if bf16:
                return Precision("bf16", requested, f"auto: {name} supports bf16")
            return Precision("fp16", requested, f"auto: {name} has no bf16; fp16 with loss scaling")
        if requested == "bf16" and not bf16:
            raise ConfigError(
                f"training.precision=bf16: {name} does not support bf16; use fp16, fp32 or auto"
            )
        return Precision(requested, requested, f"set: {requested} on {name}")
    cpu = cpu_info()
    if requested == "fp16":
        raise ConfigError(
            f"training.precision=fp16 needs a CUDA device (this is {device}: {cpu.model}); use bf16, fp32 or auto"
        )
    if requested == "auto":
        if device == "cpu" and cpu.native_bf16:
            return Precision("bf16", requested, f"auto: {cpu.model} has {cpu.isa()} (native bf16 matmuls)")
        return Precision("fp32", requested, f"auto: {cpu.model} ({cpu.isa()}) has no native bf16 matmuls")
    note = "" if requested == "fp32" or cpu.native_bf16 else " (emulated here: slower than fp32)"
    return Precision(requested, requested, f"set: {requested} on {cpu.model}{note}")


def autocast(precision: Precision | str | None, device: str = "cpu"):
    """A ``torch.autocast`` context for bf16 / fp16, a no-op for fp32 or None."""
    if isinstance(precision, str):
        precision = resolve_precision(precision, device)
    if precision is None or precision.name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=precision.dtype)


def precision_of(accelerator) -> Precision:
    """The precision :func:`~transferkit.training.loop.make_accelerator` chose (fp32 for an Accelerator made
    elsewhere, or none)."""
    found = getattr(accelerator, "transferkit_precision", None)
    return found or Precision("fp32", "fp32", "no transferkit accelerator: fp32")


def low_precision_copy(model: torch.nn.Module, precision: Precision | str | None) -> torch.nn.Module:
    """``model`` itself at fp32; else a copy whose matmul weights (linear and convolution layers) are bf16 /
    fp16, for forward passes through frozen weights (feature caching) under :func:`autocast`.

    Autocast casts exactly these weights to bf16 on every call; casting them once gives the same numbers
    without the per-call casts. Embeddings, norms and the residual stream stay as autocast leaves them
    (fp32): casting the whole model to bf16 instead cost the MiniLM head 1.8 points of test accuracy.
    """
    if isinstance(precision, str):
        precision = resolve_precision(precision)
    if precision is None or precision.name == "fp32":
        return model

    work = copy.deepcopy(model)
    matmuls = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    for module in work.modules():
        if isinstance(module, matmuls):
            module.to(precision.dtype)
    return work


def matmul_gflops(kind: str, n: int = 1024, seconds: float = 0.5) -> float | None:
    """Measured square-matmul throughput in GFLOP/s (int8: GOP/s) on the CPU; None where the kind cannot run.

    ``kind`` is fp32, bf16 or int8 (``torch._int_mm``, the VNNI / AMX-INT8 kernels where present).
    """
    gen = torch.Generator().manual_seed(0)
    if kind == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
        op = torch._int_mm
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[kind]
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)
        op = torch.matmul
    try:
        op(a, b)  # warm-up (and the check that this build has the kernel)
    except (RuntimeError, NotImplementedError):
        return None
    runs, start = 0, time.perf_counter()
    while True:
        op(a, b)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and runs >= 2:
            return 2 * n**3 * runs / elapsed / 1e9


def describe(measure: bool = True, seconds: float = 0.5) -> dict:
    """Everything ``transferkit env`` reports, as a dict (``measure=False`` skips the matmul timings)."""
    # transformers, PIL, yaml ... load on first use, not when hardware is imported
    import transformers

    cpu = cpu_info()
    info = {
        "cpu": {**asdict(cpu), "isa": cpu.isa(), "native_bf16": cpu.native_bf16},
        "gpus": gpus(),
        "device": device_type(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    try:
        info["precision_auto"] = resolve_precision("auto").record()
    except ConfigError as err:  # pragma: no cover - auto never raises; kept for safety
        info["precision_auto"] = {"name": "fp32", "requested": "auto", "reason": str(err)}
    if measure:
        info["matmul_gflops"] = {
            k: _round(matmul_gflops(k, seconds=seconds)) for k in ("fp32", "bf16", "int8")
        }
    return info


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def header(info: dict | None = None) -> str:
    """One line naming the hardware, for the top of every benchmark's output and README table."""
    info = info or describe(measure=False)
    cpu = info["cpu"]
    gpu = "; ".join(g["name"] for g in info["gpus"]) or "no GPU"
    line = (
        f"hardware: {cpu['model']} | {cpu['cores']} cores, torch threads {cpu['torch_threads']} | ISA {cpu['isa']}"
        f" | {gpu} | torch {info['torch']} | precision auto -> {info['precision_auto']['name']}"
    )
    if "matmul_gflops" in info:
        g = info["matmul_gflops"]
        line += " | matmul GFLOP/s fp32 {} bf16 {} int8 {}".format(
            *(g.get(k) for k in ("fp32", "bf16", "int8"))
        )
    return line
