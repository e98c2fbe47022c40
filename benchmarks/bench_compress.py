"""fp32 PyTorch vs fp32 ONNX vs int8 ONNX on a MiniLM-L6 rotten_tomatoes classifier, with three targets.

Uses ``transferkit compress --int8`` (the same code users run) on a given run, or on one it fits itself
(``full``, 1 epoch on a seeded training subsample, validation and test capped at ``--max-eval`` rows).
Latencies are medians of ``--repeats`` calls of ``predict`` (tokenization included) at batch 1 and 32,
with ``--threads`` threads for PyTorch and onnxruntime alike.

Targets:
  speed     int8 at least 2x faster than fp32 on CPU (PyTorch fp32, batch 1 and batch 32), and reported
            against onnxruntime fp32 as well
  accuracy  int8 loses at most 1 point of test accuracy
  size      the int8 file is at most 30% of the fp32 file

Usage:
    python benchmarks/bench_compress.py --quick                 # smoke run (fits a small run), a few minutes
    python benchmarks/bench_compress.py --run runs/<minilm run>
    python benchmarks/bench_compress.py --train-size 4000 --max-eval 1000 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets HF_HUB_OFFLINE before anything loads transformers)


def fit_run(folder: Path, train_size: int, max_eval: int) -> Path:
    import transferkit

    out = folder / "rt-minilm-full"
    transferkit.fit(
        dataset="rotten_tomatoes", backbone="minilm-l6", strategy="full", epochs=1, output=str(out),
        overrides=[f"data.max_train_samples={train_size}", f"data.max_eval_samples={max_eval}",
                   "training.batch_size=16", "training.progress=false", "evaluation.pretrained_baseline=false"],
    )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="an existing MiniLM text-classification run (default: fit one)")
    parser.add_argument("--quick", action="store_true", help="small fit (600 train, 200 test), 5 repeats")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--max-eval", type=int, default=500, help="validation / test rows of a fitted run")
    parser.add_argument("--data", help="labelled file to measure on (default: the run's test split)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="threads for PyTorch and onnxruntime")
    parser.add_argument("--max-load", type=float, default=0.5, help="wait while others use more cores")
    parser.add_argument("--max-wait", type=float, default=0, help="seconds to wait for a quiet machine")
    parser.add_argument("--output", default=str(common.RESULTS / "compress.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.max_eval, args.repeats = 600, 200, 5

    import torch

    from transferkit.compression import compress_run

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_compress.") as tmp:
        t0 = time.perf_counter()
        run = Path(args.run) if args.run else fit_run(Path(tmp), args.train_size, args.max_eval)
        fit_s = time.perf_counter() - t0
        quiet = common.wait_for_quiet(args.max_load, args.max_wait)
        result = compress_run(run, int8=True, data=args.data, output=Path(tmp) / "int8", repeats=args.repeats)
        report = json.loads((result.folder / "report.json").read_text())
    torch_fp32, onnx_fp32, int8 = result.rows
    print(result.table)
    speed1 = torch_fp32["latency_ms_batch1"] / int8["latency_ms_batch1"]
    speed32 = torch_fp32["latency_ms_batch32"] / int8["latency_ms_batch32"]
    onnx1 = onnx_fp32["latency_ms_batch1"] / int8["latency_ms_batch1"]
    onnx32 = onnx_fp32["latency_ms_batch32"] / int8["latency_ms_batch32"]
    lost = (torch_fp32["accuracy"] - int8["accuracy"]) * 100
    size = int8["size_mb"] / onnx_fp32["size_mb"]
    targets = {
        "int8 >= 2x faster than PyTorch fp32 (batch 1 and 32)": min(speed1, speed32) >= 2.0,
        "int8 loses <= 1 accuracy point": lost <= 1.0,
        "int8 file <= 30% of fp32": size <= 0.30,
    }
    print(
        f"\nint8 vs PyTorch fp32: {speed1:.2f}x at batch 1, {speed32:.2f}x at batch 32; "
        f"vs onnxruntime fp32: {onnx1:.2f}x at batch 1, {onnx32:.2f}x at batch 32"
    )
    print(f"accuracy lost: {lost:+.2f} points on {report['num_examples']} examples; size ratio {size:.2f}")
    for name, ok in targets.items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    out = {
        "machine": common.machine(), "threads": args.threads, "quiet": quiet, "fit_seconds": round(fit_s, 1),
        "report": report, "ratios": {"speedup_vs_torch_b1": speed1, "speedup_vs_torch_b32": speed32,
        "speedup_vs_onnx_b1": onnx1, "speedup_vs_onnx_b32": onnx32, "accuracy_points_lost": lost,
        "size_ratio": size}, "targets": targets,
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
