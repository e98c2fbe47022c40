"""Defaults on small data: every strategy with its defaults, ``auto``, the pretrained baseline and a
from-scratch model, at several label budgets per class.

For each data set and budget, ``k`` labelled examples per class are drawn (seeded) from the catalog's train
split; validation is a seeded sample of the catalog's validation split (``--validation-rows``, so early
stopping and the guard have a usable signal; a true few-shot user with a smaller validation set gets noisier
selection), and test is the catalog's test split (capped by ``--test-rows``). Every transferkit run uses the
documented defaults only: no epochs, batch size or learning rate given (``training.progress=false`` aside).

Contenders per cell:

* ``auto`` (what ``transferkit fit`` does without ``--strategy``) and each strategy in ``--strategies``. A
  strategy identical to auto's choice is not run twice: its row is auto's run (same config, same seed, the
  same result bit for bit), marked ``= auto``;
* ``baseline``: the linear probe on frozen pretrained features that every run prints (from the runs);
* ``tfidf+lr`` (text) / ``pixels+lr`` (images): scikit-learn logistic regression from scratch, C chosen on
  the same validation sample.

Targets (issue "small data first"): no default run ends below its own baseline (on validation, where the guard
acts, and on test); ``auto`` within 1 point of the best strategy of the cell on >= 80% of the cells at no
more than ``full``'s time; ``auto`` above TF-IDF + logistic regression at every budget of the text sets.

Results accumulate in ``benchmarks/results/bench_defaults.json`` (a cell already there is not re-run unless
``--rerun``), so a long grid can be run in parts. ``--markdown`` prints the README table of what is there.

Usage:
    python benchmarks/bench_defaults.py --datasets rotten_tomatoes vader_tweets --budgets 8 32 128
    python benchmarks/bench_defaults.py --datasets mnist5k --budgets 8 32 --strategies linear-probe full
    python benchmarks/bench_defaults.py --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from common import RESULTS, machine  # noqa: E402

OUT = RESULTS / "bench_defaults.json"
TEXT = {"rotten_tomatoes", "vader_tweets", "vader_amazon", "vader_movies", "vader_nyt"}
IMAGES = {"mnist5k", "digits"}
DEFAULT_STRATEGIES = ["linear-probe", "head", "lp-ft", "full", "lora"]
BACKBONE = {"text": "minilm-l6", "image": "efficientnet-lite0"}
COMMON = ["training.progress=false", "output.tensorboard=false"]
IMAGE_SETTINGS = ["image.image_size=96"]  # 28-pixel digits gain little from 224 at 5x the compute


def _sample(frame: pd.DataFrame, n: int | None, seed: int, per_class: bool) -> pd.DataFrame:
    if n is None:
        return frame.reset_index(drop=True)
    if per_class:
        parts = [g.sample(n=min(n, len(g)), random_state=seed) for _, g in frame.groupby("label")]
        return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)


def cell_frames(dataset: str, budget: int | None, args) -> dict[str, pd.DataFrame]:
    from transferkit.data import load_catalog_dataset

    cat = load_catalog_dataset(dataset)
    return {
        "train": _sample(cat["train"], budget, args.seed, per_class=True),
        "validation": _sample(cat["validation"], args.validation_rows, args.seed, per_class=False),
        "test": _sample(cat["test"], args.test_rows, args.seed, per_class=False),
    }


def scratch(frames: dict[str, pd.DataFrame], kind: str) -> dict:
    """TF-IDF (text) or raw pixels (images) + logistic regression, C chosen on validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    t0 = time.perf_counter()
    if kind == "text":
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        x = {s: (vec.fit_transform if s == "train" else vec.transform)(f["text"]) for s, f in frames.items()}
    else:
        x = {
            s: np.stack([np.asarray(v, dtype=np.float32).ravel() / 255 for v in f["text"]])
            for s, f in frames.items()
        }
    y = {s: f["label"].astype(str).to_numpy() for s, f in frames.items()}
    best = None
    for c in (0.1, 1.0, 10.0, 100.0):
        m = LogisticRegression(C=c, max_iter=3000).fit(x["train"], y["train"])
        val = f1_score(y["validation"], m.predict(x["validation"]), average="macro")
        if best is None or val > best[0]:
            best = (val, m)
    pred = best[1].predict(x["test"])
    return {
        "validation_f1_macro": best[0],
        "test_accuracy": accuracy_score(y["test"], pred),
        "test_f1_macro": f1_score(y["test"], pred, average="macro"),
        "wall_seconds": time.perf_counter() - t0,
    }


def run_transferkit(frames, dataset: str, strategy: str, root: Path) -> dict:
    import transferkit

    kind = "image" if dataset in IMAGES else "text"
    overrides = list(COMMON) + (IMAGE_SETTINGS if kind == "image" else ["backbone.max_length=128"])
    t0 = time.perf_counter()
    run = transferkit.fit(
        frames=frames,
        backbone=BACKBONE[kind],
        task="image-classification" if kind == "image" else None,
        strategy=strategy,
        output=str(root / f"{dataset}-{strategy}-{time.time_ns()}"),
        overrides=overrides,
    )
    m = run.metrics
    base = m["pretrained_baseline"]
    return {
        "test_accuracy": m["test"]["accuracy"],
        "test_f1_macro": m["test"]["f1_macro"],
        "validation_f1_macro": m["validation"]["f1_macro"],
        "baseline_test_f1_macro": base["test"]["f1_macro"],
        "baseline_test_accuracy": base["test"]["accuracy"],
        "baseline_validation_f1_macro": base["validation"]["f1_macro"],
        "fine_tuned_validation_f1_macro": m.get("fine_tuned", m)["validation"]["f1_macro"],
        "fine_tuned_test_f1_macro": m.get("fine_tuned", m)["test"]["f1_macro"],
        "model": m.get("model"),
        "warnings": m.get("warnings", []),
        "steps": m["training"]["steps"],
        "schedule": (m["training"].get("schedule") or {}).get("rule", "closed form"),
        "auto": m.get("auto"),
        "strategy": m["strategy"],
        "wall_seconds": time.perf_counter() - t0,
    }


def load_results() -> dict:
    return json.loads(OUT.read_text()) if OUT.is_file() else {"cells": {}, "machines": []}


def save_results(res: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(OUT)


def run_grid(args) -> None:
    res = load_results()
    res["machines"].append(machine())
    print("machine:", res["machines"][-1], flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_defaults-") as tmp:
        for dataset in args.datasets:
            for b in args.budgets:
                budget = None if b == "all" else int(b)
                key = f"{dataset}/{b}"
                cell = res["cells"].setdefault(key, {})
                frames = cell_frames(dataset, budget, args)
                kind = "image" if dataset in IMAGES else "text"
                name = "tfidf+lr" if kind == "text" else "pixels+lr"
                if name not in cell or args.rerun:
                    cell[name] = scratch(frames, kind)
                    save_results(res)
                order = ["auto"] + [s for s in args.strategies if s != "auto"]
                for strategy in order:
                    if strategy in cell and not args.rerun:
                        continue
                    chosen = cell.get("auto", {}).get("strategy")
                    if strategy == chosen:
                        cell[strategy] = dict(cell["auto"], same_as="auto")
                    else:
                        print(f"{key} {strategy} ...", flush=True)
                        cell[strategy] = run_transferkit(frames, dataset, strategy, Path(tmp))
                    r = cell[strategy]
                    print(
                        f"{key} {strategy:>12}: test F1 {r['test_f1_macro']:.4f} (baseline {r['baseline_test_f1_macro']:.4f})"
                        f" val {r['validation_f1_macro']:.4f} (baseline {r['baseline_validation_f1_macro']:.4f})"
                        f" {r['wall_seconds']:.0f} s {r['schedule']}",
                        flush=True,
                    )
                    save_results(res)


def verdicts(res: dict) -> list[str]:
    cells = res["cells"]
    below_val, below_test, near, total, cheap, above_scratch, text_cells = [], [], 0, 0, 0, 0, 0
    for key, cell in cells.items():
        runs = {s: r for s, r in cell.items() if "baseline_test_f1_macro" in r}
        for s, r in runs.items():
            if r["validation_f1_macro"] < r["baseline_validation_f1_macro"] - 1e-9:
                below_val.append(f"{key} {s}")
            if r["test_f1_macro"] < r["baseline_test_f1_macro"] - 1e-9:
                below_test.append(f"{key} {s} ({r['test_f1_macro']:.3f} < {r['baseline_test_f1_macro']:.3f})")
        if "auto" not in runs:
            continue
        total += 1
        best = max(r["test_f1_macro"] for r in runs.values())
        near += runs["auto"]["test_f1_macro"] >= best - 0.01
        if "full" in runs:
            cheap += runs["auto"]["wall_seconds"] <= runs["full"]["wall_seconds"] * 1.05
        if "tfidf+lr" in cell:
            text_cells += 1
            above_scratch += runs["auto"]["test_f1_macro"] > cell["tfidf+lr"]["test_f1_macro"]
    out = [
        f"{'PASS' if not below_val else 'FAIL'} no default run below its baseline on validation (the guard's split): "
        + (", ".join(below_val) or "none below"),
        f"{'PASS' if not below_test else 'FAIL'} ... and on test: " + (", ".join(below_test) or "none below"),
    ]
    if total:
        out.append(
            f"{'PASS' if near >= 0.8 * total else 'FAIL'} auto within 1 point of the cell's best test macro-F1: {near}/{total} cells"
        )
        out.append(
            f"{'PASS' if cheap == total else 'FAIL'} auto's wall time <= full's: {cheap}/{total} cells"
        )
    if text_cells:
        out.append(
            f"{'PASS' if above_scratch == text_cells else 'FAIL'} auto above TF-IDF + LR: {above_scratch}/{text_cells} text cells"
        )
    return out


def markdown(res: dict) -> str:
    lines = []
    for key, cell in res["cells"].items():
        lines.append(
            f"\n**{key} per class** (test macro-F1 / wall s; baseline = linear probe on frozen features)\n"
        )
        lines.append(
            "| contender | test macro-F1 | test acc | val macro-F1 | baseline test F1 | model kept | steps | wall s |"
        )
        lines.append("|---|---:|---:|---:|---:|---|---:|---:|")
        for s, r in cell.items():
            if "baseline_test_f1_macro" in r:
                name = (
                    f"{s} -> {r['strategy']}"
                    if s == "auto"
                    else s + (" (= auto)" if r.get("same_as") else "")
                )
                lines.append(
                    f"| {name} | {r['test_f1_macro']:.3f} | {r['test_accuracy']:.3f} | {r['validation_f1_macro']:.3f} | "
                    f"{r['baseline_test_f1_macro']:.3f} | {r['model']} | {r['steps']} | {r['wall_seconds']:.0f} |"
                )
            else:
                lines.append(
                    f"| {s} (from scratch) | {r['test_f1_macro']:.3f} | {r['test_accuracy']:.3f} | {r['validation_f1_macro']:.3f} | | | | {r['wall_seconds']:.0f} |"
                )
    return "\n".join(lines + [""] + ["- " + v for v in verdicts(res)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["rotten_tomatoes", "vader_tweets"])
    ap.add_argument("--budgets", nargs="+", default=["8", "32", "128"], help="labels per class, or 'all'")
    ap.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES)
    ap.add_argument("--validation-rows", type=int, default=256)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print the table of the results so far and exit")
    args = ap.parse_args()
    if args.markdown:
        res = load_results()
        print("machines:", "; ".join(f"{m['date']} {m['cpu']} ({m['cores']} cores)" for m in res["machines"]))
        print(markdown(res))
        return
    run_grid(args)
    print(markdown(load_results()))


if __name__ == "__main__":
    main()
