"""``transferkit serve`` against the seeds' Flask server (one request, one forward pass) on the same run.

For each server and each concurrency (default 1, 16, 64), a load generator in its own process sends
one-text ``POST`` requests over loopback for ``--seconds`` (after a short unrecorded warm-up) with exactly
that many requests in flight, and reports requests/s, p50 / p99 latency and errors; the server's peak RSS
(children included) is sampled meanwhile. transferkit is measured at each ``--precisions`` (fp32, bf16:
``serve --precision``) and, with ``--int8``, on the run compressed to an int8 ONNX folder (onnxruntime's
VNNI kernels where present). Every row also shows the compute bound: the model's FLOPs per request (2 x
non-embedding parameters x the mean tokens of a request) at this machine's measured matmul peak of that
precision, and the share of it reached. Prints all side by side with the ratios to Flask, and writes
``benchmarks/results/serve.json``.

    python benchmarks/bench_serve.py --run runs/rotten_tomatoes-full-...   # the real model, 20 s per level
    python benchmarks/bench_serve.py --quick                              # smoke: a tiny random run, 3 s per level

The script re-invokes itself for the Flask server (``--flask-server``) and the load generator (``--client``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, machine, other_load  # noqa: E402

SELF = Path(__file__).resolve()


# ------------------------------------------------------------------------------- the seeds' Flask server


def flask_server(run_dir: str, port: int) -> None:
    """What the seeds end with: Flask, the model loaded once, one forward pass per request."""
    import torch
    from flask import Flask, jsonify, request
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        f"{run_dir}/model", trust_remote_code=True
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(f"{run_dir}/model")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        text = request.get_json()["text"]
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=256)
        with torch.no_grad():
            probs = torch.softmax(model(**inputs).logits, dim=-1)[0]
        best = int(probs.argmax())
        return jsonify({"label": labels[best], "score": float(probs[best])})

    @app.get("/health")
    def health():
        return "ok"

    app.run(host="127.0.0.1", port=port, threaded=True)  # Flask's default: one thread per request


# ---------------------------------------------------------------------------------------- load generator


async def _load(
    url: str, kind: str, texts: list[str], concurrency: int, seconds: float, warmup: float
) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    record_from, stop_at = start + warmup, start + warmup + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(i: int, client) -> None:
        n = i
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            text = texts[n % len(texts)]
            n += concurrency
            body = {"inputs": [text]} if kind.startswith("transferkit") else {"text": text}
            try:
                r = await client.post(url, json=body)
                ok = r.status_code == 200
                key = str(r.status_code)
            except httpx.HTTPError as err:
                ok, key = False, type(err).__name__
            done = time.perf_counter()
            if sent >= record_from and done <= stop_at + 30:
                if ok:
                    latencies.append(done - sent)
                else:
                    errors[key] = errors.get(key, 0) + 1

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(i, client) for i in range(concurrency)))
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
        )

    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def client_main(
    url: str, kind: str, texts_file: str, concurrency: int, seconds: float, warmup: float
) -> None:
    texts = json.loads(Path(texts_file).read_text())
    print(json.dumps(asyncio.run(_load(url, kind, texts, concurrency, seconds, warmup))))


# ------------------------------------------------------------------------------------------------ driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (workers), MiB."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


class PeakRss:
    """Samples a process tree's RSS every 0.5 s in a thread; :meth:`stop` returns the peak (MiB)."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_mib(self.pid))


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready within {timeout} s")


def start_server(kind: str, args, log: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    if kind.startswith("transferkit"):
        precision = kind.split("-", 1)[1] if "-" in kind else "auto"
        served = args.int8_dir if precision == "int8" else args.run
        cmd = [
            sys.executable,
            "-m",
            "transferkit.cli.main",
            "-q",
            "serve",
            str(served),
            "--port",
            str(port),
        ]
        if precision != "int8":
            cmd += ["--precision", precision]
        cmd += ["--workers", str(args.workers), "--max-batch-size", str(args.max_batch_size)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        cmd += [
            "--max-wait-ms",
            str(args.max_wait_ms),
            "--max-queue",
            "4096",
            "--access-log",
            str(log) + ".access",
        ]
        ready, url = f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{port}/v1/predict"
    else:
        cmd = [sys.executable, str(SELF), "--flask-server", str(args.run), str(port)]
        ready, url = f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/predict"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_ready(ready, proc)
    return proc, url, ready


def measure(kind: str, args, texts_file: Path, log: Path) -> list[dict]:
    proc, url, _ = start_server(kind, args, log)
    rows = []
    try:
        for c in args.concurrency:
            sampler = PeakRss(proc.pid)
            cmd = [
                sys.executable,
                str(SELF),
                "--client",
                url,
                kind,
                str(texts_file),
                str(c),
                str(args.seconds),
            ]
            cmd += [str(args.warmup)]
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.seconds + args.warmup + 300
            )
            peak = sampler.stop()
            if done.returncode != 0:
                raise RuntimeError(f"load generator failed:\n{done.stderr[-2000:]}")
            row = {
                "server": kind,
                "concurrency": c,
                **json.loads(done.stdout),
                "server_rss_mib": round(peak),
            }
            rows.append(row)
            print(
                f"  {kind:<11} c={c:<3} {row['requests_per_s']:>8.1f} req/s  p50 {row['p50_ms']:>7.1f} ms  "
                f"p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']}  RSS {row['server_rss_mib']} MiB",
                flush=True,
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return rows


def tiny_run(folder: Path) -> Path:
    """A tiny random text classifier (tiny-bert, a few steps on toy data) for smoke runs."""
    run = folder / "tiny-run"
    if (run / "labels.json").exists():
        return run
    import random

    import pandas as pd

    import transferkit

    rng = random.Random(0)
    words = [
        "the",
        "a",
        "movie",
        "plot",
        "actor",
        "scene",
        "story",
        "film",
        "was",
        "is",
        "and",
        "of",
        "it",
        "this",
        "really",
    ]
    rows = [
        (" ".join(rng.choices(words, k=rng.randint(3, 30)) + [kw]), lab)
        for kw, lab in [("great", "pos"), ("awful", "neg")] * 60
    ]
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "tiny.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(csv, index=False)
    transferkit.fit(
        train=str(csv), backbone="tiny-bert", strategy="full", epochs=1, output=str(run),
        overrides=["training.progress=false", "evaluation.pretrained_baseline=false"],
    )  # fmt: skip
    return run


def sample_texts(n: int = 2000) -> list[str]:
    """Real review snippets when the catalog is cached (varied lengths), else synthetic ones."""
    try:
        from transferkit.data import load_catalog_dataset

        return load_catalog_dataset("rotten_tomatoes")["test"]["text"].astype(str).tolist()[:n]
    except Exception:
        words = [
            "a",
            "gripping",
            "beautifully",
            "shot",
            "film",
            "with",
            "a",
            "plot",
            "that",
            "never",
            "quite",
            "lands",
            "but",
            "the",
            "actors",
            "save",
            "it",
        ]
        return [" ".join(words[: 5 + i % len(words)]) for i in range(n)]


def compute_bound(run_dir: Path, texts: list[str], kinds: list[str], seconds: float = 1.0) -> dict:
    """Requests/s the forward pass alone allows at each precision's measured matmul peak.

    FLOPs per request = 2 x non-embedding parameters x mean tokens of one request (each request carries one
    text of the sample): the matmuls of a forward pass; attention's T^2 terms are small at these lengths.
    """
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from transferkit import hardware

    weights = load_file(str(run_dir / "model" / "model.safetensors"))
    params = sum(t.numel() for k, t in weights.items() if "embeddings" not in k)
    tok = AutoTokenizer.from_pretrained(str(run_dir / "model"))
    tokens = sum(len(x) for x in tok(texts[:500], truncation=True)["input_ids"]) / min(len(texts), 500)
    flops = 2 * params * tokens
    out = {"nonembedding_parameters": params, "mean_tokens": round(tokens, 1), "flops_per_request": flops}
    for kind in kinds:
        precision = kind.split("-", 1)[1] if "-" in kind else "fp32"
        peak = hardware.matmul_gflops(
            precision if precision in ("fp32", "bf16", "int8") else "fp32", seconds=seconds
        )
        if peak:
            out[kind] = {"peak_gflops": round(peak, 1), "bound_requests_per_s": round(peak * 1e9 / flops, 1)}
    return out


def table(rows: list[dict], bound: dict | None = None) -> str:
    by = {(r["server"], r["concurrency"]): r for r in rows}
    levels = sorted({r["concurrency"] for r in rows})
    kinds = list(dict.fromkeys(r["server"] for r in rows))
    out = [
        "| concurrency | server | requests/s | p50 ms | p99 ms | errors | server RSS MiB | % of compute bound |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in levels:
        for kind in kinds:
            r = by.get((kind, c))
            if r:
                b = (
                    (bound or {})
                    .get(kind if kind != "flask" else "transferkit-fp32", {})
                    .get("bound_requests_per_s")
                )
                share = f"{100 * r['requests_per_s'] / b:.0f}% of {b:.0f}" if b else "-"
                out.append(
                    f"| {c} | {kind} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['server_rss_mib']} | {share} |"
                )
        f = by.get(("flask", c))
        for kind in (k for k in kinds if k != "flask"):
            t = by.get((kind, c))
            if t and f and f["requests_per_s"] > 0:
                out.append(
                    f"| {c} | **{kind} / flask** | **{t['requests_per_s'] / f['requests_per_s']:.2f}x** | "
                    f"{t['p50_ms'] / f['p50_ms']:.2f}x | {t['p99_ms'] / f['p99_ms']:.2f}x | | | |"
                )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--run", type=Path, help="run folder to serve (default: a tiny random run, for smoke tests)"
    )
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per concurrency level")
    p.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds before each measurement")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    p.add_argument("--workers", type=int, default=1, help="transferkit serve --workers")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument(
        "--threads", type=int, help="transferkit serve --threads (default: serve's own, cores // workers)"
    )
    p.add_argument(
        "--max-wait-ms", type=float, default=0.0, help="serve --max-wait-ms (default serve's own, 0)"
    )
    p.add_argument("--only", choices=["transferkit", "flask"], help="measure one server only")
    p.add_argument(
        "--precisions", default="fp32,bf16", help="serve --precision values to measure, comma-separated"
    )
    p.add_argument("--int8", action="store_true", help="also serve the run compressed to an int8 ONNX folder")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s per level, 1 s warm-up, concurrency 1,16"
    )
    p.add_argument("--flask-server", nargs=2, metavar=("RUN", "PORT"), help=argparse.SUPPRESS)
    p.add_argument("--client", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.flask_server:
        return flask_server(args.flask_server[0], int(args.flask_server[1]))
    if args.client:
        url, kind, texts, c, seconds, warmup = args.client
        return client_main(url, kind, texts, int(c), float(seconds), float(warmup))
    if args.quick:
        args.seconds, args.warmup, args.concurrency = 3.0, 1.0, [1, 16]

    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    args.run = args.run or tiny_run(RESULTS / "serve-tiny")
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(sample_texts()))
    info = {**machine(), "other_cores_before": other_load(2.0), "run": str(args.run)}
    print(f"serving {args.run}; other jobs use {info['other_cores_before']:.2f} cores", flush=True)
    kinds = [f"transferkit-{p}" for p in args.precisions.split(",") if p]
    if args.int8:
        from transferkit.compression import compress_run

        args.int8_dir = work / "int8"
        compress_run(args.run, int8=True, output=args.int8_dir, repeats=2)
        kinds.append("transferkit-int8")
    bound = compute_bound(Path(args.run), json.loads(texts_file.read_text()), kinds)
    print(
        f"compute bound per request: {bound['flops_per_request'] / 1e9:.3f} GFLOP ({bound['mean_tokens']} tokens)"
    )
    rows = []
    for kind in [*kinds, "flask"]:
        if args.only is None or kind.startswith(args.only):
            rows += measure(kind, args, texts_file, work / f"{kind}.log")
    print()
    print(table(rows, bound))
    name = "serve-quick.json" if args.quick else "serve.json"
    settings = {k: v for k, v in vars(args).items() if k not in ("flask_server", "client")}
    (RESULTS / name).write_text(
        json.dumps(
            {"machine": info, "settings": settings, "compute_bound": bound, "rows": rows},
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {RESULTS / name}; server logs in {work}")


if __name__ == "__main__":
    main()
