"""``transferkit env``: what transferkit will use on this machine (CPU, ISA, GPUs, precision, matmul speed)."""

from __future__ import annotations

import json

from transferkit.cli.common import _print, _table


def add_parsers(sub) -> None:
    p = sub.add_parser("env", help="what transferkit uses here: CPU, ISA, GPUs, precision, matmul GFLOP/s")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--no-measure", action="store_true", help="skip the fp32 / bf16 / int8 matmul timings (a few seconds)"
    )
    p.add_argument("--seconds", type=float, default=1.0, help="time spent on each matmul timing (default 1)")


def cmd_env(args) -> int:
    from transferkit import hardware

    info = hardware.describe(measure=not args.no_measure, seconds=args.seconds)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    cpu, auto = info["cpu"], info["precision_auto"]
    gpus = "; ".join(f"{g['name']} ({g['memory_gib']} GiB, sm {g['capability']})" for g in info["gpus"])
    rows = [
        ("CPU", cpu["model"]),
        ("cores / torch threads", f"{cpu['cores']} / {cpu['torch_threads']}"),
        ("ISA", f"{cpu['isa']} (torch kernels: {cpu['capability']})"),
        ("native bf16 matmuls", "yes" if cpu["native_bf16"] else "no"),
        ("GPUs", gpus or "none"),
        ("device", info["device"]),
        ("precision auto picks", f"{auto['name']} ({auto['reason']})"),
        ("torch / transformers / python", f"{info['torch']} / {info['transformers']} / {info['python']}"),
    ]
    if "matmul_gflops" in info:
        g = info["matmul_gflops"]

        def show(kind: str, unit: str = "GFLOP/s") -> str:
            return "n/a (no kernel in this torch build)" if g[kind] is None else f"{g[kind]:,.1f} {unit}"

        rows.append(("matmul 1024x1024 fp32", show("fp32")))
        ratio = f" ({g['bf16'] / g['fp32']:.1f}x fp32)" if g["bf16"] and g["fp32"] else ""
        rows.append(("matmul 1024x1024 bf16", show("bf16") + ratio))
        rows.append(("matmul 1024x1024 int8", show("int8", "GOP/s")))
    _print(
        _table(
            "transferkit env (training.precision=auto and serve --precision auto use this)",
            rows,
            ("", "value"),
        )
    )
    return 0
