"""Defaults on small data: every strategy with its defaults, ``auto``, the pretrained baseline and a
from-scratch model, at several label budgets per class.

For each data set and budget, ``k`` labelled examples per class (NER: ``k`` sentences) are drawn (seeded) from
the catalog's train split; validation is a seeded sample of the catalog's validation split
(``--validation-rows``, so early stopping and the guard have a usable signal; a true few-shot user with a
smaller validation set gets noisier selection), and test a seeded sample of its test split (``--test-rows``).
Every transferkit run uses the documented defaults only: no epochs, batch size or learning rate given.

Kinds (by data set): text (rotten_tomatoes, vader_*; MiniLM-L6; macro-F1), images (mnist5k, digits;
EfficientNet-Lite0 at 96 px; macro-F1), NER (conll2003; MiniLM-L6; entity F1) and generation
(``rt_instructions``: rotten_tomatoes snippets as "fresh or rotten?" instructions for SmolLM2-135M; exact
match, the guard on perplexity).

Contenders per cell:

* ``auto`` (what ``transferkit fit`` does without ``--strategy``) and each strategy in ``--strategies``. A
  strategy identical to auto's choice is not run twice: its row is auto's run (same config, same seed, the
  same result bit for bit), marked ``= auto``;
* ``baseline``: what every run prints beside itself (the linear probe on frozen features; generation: the
  pretrained LM);
* from scratch: TF-IDF + logistic regression (text), pixels + logistic regression (images), a dictionary
  tagger (NER), the majority answer (generation).

Targets (issue "small data first"): no default run ends below its own baseline (on validation, where the guard
acts, and on test); ``auto`` within 1 point of the best strategy of the cell on >= 80% of the cells at no
more than ``full``'s time; ``auto`` above TF-IDF + logistic regression at every budget of the text sets.

Results accumulate in ``benchmarks/results/bench_defaults.json`` (``--results``; a cell already there is not
re-run unless ``--rerun``), so a long grid can be run in parts. ``--markdown`` prints the README table.

Usage:
    python benchmarks/bench_defaults.py --datasets rotten_tomatoes vader_tweets --budgets 8 32 128
    python benchmarks/bench_defaults.py --datasets conll2003 --budgets 8 32 128
    python benchmarks/bench_defaults.py --datasets rt_instructions --budgets 8 32
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

IMAGES = {"mnist5k", "digits"}
NER = {"conll2003"}
GENERATION = "rt_instructions"
DEFAULT_STRATEGIES = ["linear-probe", "head", "lp-ft", "full", "lora"]
GENERATION_STRATEGIES = ["lora", "full"]  # the probe-based strategies do not apply to an LM head
COMMON = ["training.progress=false", "output.tensorboard=false"]
# kind -> backbone, task, settings, the metric compared, the guard's metric, the from-scratch contender
KINDS = {
    "text": ("minilm-l6", None, ["backbone.max_length=128"], "f1_macro", "f1_macro", "tfidf+lr"),
    # 28-pixel digits gain little from 224 at 5x the compute; catalog images are data: URIs in `text`
    "image": ("efficientnet-lite0", "image-classification", ["image.image_size=96", "image.path_column=text"], "f1_macro", "f1_macro", "pixels+lr"),
    "ner": ("minilm-l6", "token-classification", ["backbone.max_length=128"], "f1", "f1", "dictionary"),
    "generation": ("smollm2-135m", "generation", ["backbone.max_length=96", "generation.max_new_tokens=4", "generation.eval_samples=200"], "exact_match", "perplexity", "majority"),
}  # fmt: skip
PROMPT = "Is this movie review fresh or rotten?\nReview: {text}\nAnswer:"


def kind_of(dataset: str) -> str:
    if dataset in IMAGES:
        return "image"
    if dataset in NER:
        return "ner"
    return "generation" if dataset == GENERATION else "text"


def _sample(frame: pd.DataFrame, n: int | None, seed: int, per_class: bool) -> pd.DataFrame:
    if n is None:
        return frame.reset_index(drop=True)
    if per_class:
        parts = [g.sample(n=min(n, len(g)), random_state=seed) for _, g in frame.groupby("label")]
        return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)


def cell_frames(dataset: str, budget: int | None, args) -> dict[str, pd.DataFrame]:
    """The cell's splits: ``budget`` per class (NER: sentences) from train, seeded samples of the others."""
    from transferkit.data import load_catalog_dataset

    kind = kind_of(dataset)
    cat = load_catalog_dataset("rotten_tomatoes" if kind == "generation" else dataset)
    frames = {
        "train": _sample(cat["train"], budget, args.seed, per_class=kind != "ner"),
        "validation": _sample(cat["validation"], args.validation_rows, args.seed, per_class=False),
        "test": _sample(cat["test"], args.test_rows, args.seed, per_class=False),
    }
    if kind == "generation":  # the classification texts as instructions; the completion is the label
        frames = {
            s: pd.DataFrame({"prompt": [PROMPT.format(text=t) for t in f["text"]], "completion": [" " + str(x) for x in f["label"]]})
            for s, f in frames.items()
        }  # fmt: skip
    return frames


def _logistic(x: dict, y: dict) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    best = None
    for c in (0.1, 1.0, 10.0, 100.0):
        m = LogisticRegression(C=c, max_iter=3000).fit(x["train"], y["train"])
        val = f1_score(y["validation"], m.predict(x["validation"]), average="macro")
        if best is None or val > best[0]:
            best = (val, m)
    pred = best[1].predict(x["test"])
    return {
        "validation_metric": best[0],
        "test_metric": f1_score(y["test"], pred, average="macro"),
        "test_accuracy": accuracy_score(y["test"], pred),
    }


def _pixels(uri: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    raw = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("L"), dtype=np.float32).ravel() / 255


def _dictionary(frames: dict[str, pd.DataFrame]) -> dict:
    """Each word gets its most frequent tag in train (O if unseen); entity F1 (seqeval, strict IOB2)."""
    from collections import Counter, defaultdict

    from transferkit.evaluation.ner import entity_metrics

    seen: dict[str, Counter] = defaultdict(Counter)
    for tokens, tags in zip(frames["train"]["tokens"], frames["train"]["tags"], strict=True):
        for w, t in zip(tokens, tags, strict=True):
            seen[w][t] += 1

    def f1(split: str) -> float:
        f = frames[split]
        pred = [[seen[w].most_common(1)[0][0] if w in seen else "O" for w in toks] for toks in f["tokens"]]
        return entity_metrics([list(t) for t in f["tags"]], pred, "iob2")["f1"]

    return {"validation_metric": f1("validation"), "test_metric": f1("test")}


def scratch(frames: dict[str, pd.DataFrame], kind: str) -> dict:
    """The from-scratch contender of the kind (no pretrained weights anywhere)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    t0 = time.perf_counter()
    if kind == "ner":
        out = _dictionary(frames)
    elif kind == "generation":  # always answer the most frequent training completion
        top = frames["train"]["completion"].value_counts().index[0]
        score = {s: float((frames[s]["completion"] == top).mean()) for s in ("validation", "test")}
        out = {"validation_metric": score["validation"], "test_metric": score["test"]}
    else:
        y = {s: f["label"].astype(str).to_numpy() for s, f in frames.items()}
        if kind == "text":
            vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
            x = {
                s: (vec.fit_transform if s == "train" else vec.transform)(f["text"])
                for s, f in frames.items()
            }
        else:
            x = {s: np.stack([_pixels(v) for v in f["text"]]) for s, f in frames.items()}
        out = _logistic(x, y)
    return out | {"wall_seconds": time.perf_counter() - t0}


def run_transferkit(frames, dataset: str, strategy: str, root: Path) -> dict:
    import transferkit

    backbone, task, extra, metric, guard, _ = KINDS[kind_of(dataset)]
    t0 = time.perf_counter()
    run = transferkit.fit(
        frames=frames, backbone=backbone, task=task, strategy=strategy,
        output=str(root / f"{dataset}-{strategy}-{time.time_ns()}"), overrides=[*COMMON, *extra],
    )  # fmt: skip
    m = run.metrics
    base, tuned = m["pretrained_baseline"], m.get("fine_tuned", m)
    return {
        "metric": metric,
        "guard_metric": guard,
        "test_metric": m["test"][metric],
        "validation_metric": m["validation"][metric],
        "test_accuracy": m["test"].get("accuracy"),
        "validation_guard": m["validation"][guard],
        "test_guard": m["test"][guard],
        "baseline_validation_guard": base["validation"][guard],
        "baseline_test_guard": base["test"][guard],
        "baseline_test_metric": base["test"].get(metric),
        "fine_tuned_test_metric": tuned["test"][metric],
        "model": m.get("model"),
        "warnings": m.get("warnings", []),
        "steps": m["training"]["steps"],
        "schedule": (m["training"].get("schedule") or {}).get("rule", "closed form"),
        "auto": m.get("auto"),
        "strategy": m["strategy"],
        "wall_seconds": time.perf_counter() - t0,
    }


def _migrate(r: dict) -> dict:
    """Rows measured before the generic keys (text and images: macro-F1 throughout)."""
    if "test_f1_macro" not in r or "test_metric" in r:
        return r
    r = dict(r, metric="f1_macro", guard_metric="f1_macro", test_metric=r["test_f1_macro"])
    r["validation_metric"] = r.pop("validation_f1_macro")
    if "baseline_test_f1_macro" in r:
        r |= {
            "validation_guard": r["validation_metric"], "test_guard": r["test_metric"],
            "baseline_validation_guard": r.pop("baseline_validation_f1_macro"),
            "baseline_test_guard": r["baseline_test_f1_macro"], "baseline_test_metric": r.pop("baseline_test_f1_macro"),
            "fine_tuned_test_metric": r.pop("fine_tuned_test_f1_macro"),
        }  # fmt: skip
        r.pop("fine_tuned_validation_f1_macro", None)
        r.pop("baseline_test_accuracy", None)
    r.pop("test_f1_macro")
    return r


def load_results(path: Path) -> dict:
    res = json.loads(path.read_text()) if path.is_file() else {"cells": {}, "machines": []}
    res["cells"] = {k: {s: _migrate(r) for s, r in c.items()} for k, c in res["cells"].items()}
    return res


def save_results(res: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(path)


def _lower_is_better(metric: str) -> bool:
    return "perplexity" in metric or "loss" in metric


def _below(value: float, base: float, metric: str) -> bool:
    return value > base + 1e-9 if _lower_is_better(metric) else value < base - 1e-9


def run_grid(args) -> None:
    res = load_results(args.results)
    res["machines"].append(machine())
    print("machine:", res["machines"][-1], flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_defaults-") as tmp:
        for dataset in args.datasets:
            kind = kind_of(dataset)
            strategies = args.strategies or (
                GENERATION_STRATEGIES if kind == "generation" else DEFAULT_STRATEGIES
            )
            for b in args.budgets:
                key = f"{dataset}/{b}"
                cell = res["cells"].setdefault(key, {})
                frames = cell_frames(dataset, None if b == "all" else int(b), args)
                name = KINDS[kind][5]
                if name not in cell or args.rerun:
                    cell[name] = scratch(frames, kind)
                    save_results(res, args.results)
                for strategy in ["auto"] + [s for s in strategies if s != "auto"]:
                    if strategy in cell and not args.rerun:
                        continue
                    if strategy == cell.get("auto", {}).get("strategy"):
                        cell[strategy] = dict(cell["auto"], same_as="auto")
                    else:
                        print(f"{key} {strategy} ...", flush=True)
                        cell[strategy] = run_transferkit(frames, dataset, strategy, Path(tmp))
                    r = cell[strategy]
                    print(
                        f"{key} {strategy:>12}: test {r['metric']} {r['test_metric']:.4f} (baseline "
                        f"{r['guard_metric']} {r['baseline_test_guard']:.4f}) {r['wall_seconds']:.0f} s {r['schedule']}",
                        flush=True,
                    )
                    save_results(res, args.results)


def verdicts(res: dict) -> list[str]:
    below_val, below_test, near, total, cheap, above, text_cells = [], [], 0, 0, 0, 0, 0
    fewer_steps = 0  # deterministic, unlike wall time on a shared VM: the same config repeats its steps
    for key, cell in res["cells"].items():
        runs = {s: r for s, r in cell.items() if "baseline_validation_guard" in r}
        for s, r in runs.items():
            g = r["guard_metric"]
            if _below(r["validation_guard"], r["baseline_validation_guard"], g):
                below_val.append(f"{key} {s}")
            if _below(r["test_guard"], r["baseline_test_guard"], g):
                below_test.append(f"{key} {s} ({r['test_guard']:.3f} vs {r['baseline_test_guard']:.3f})")
        if "auto" not in runs:
            continue
        total += 1
        best = max(r["test_metric"] for r in runs.values())
        near += runs["auto"]["test_metric"] >= best - 0.01
        if "full" in runs:
            cheap += runs["auto"]["wall_seconds"] <= runs["full"]["wall_seconds"] * 1.05
            fewer_steps += runs["auto"]["steps"] <= runs["full"]["steps"]
        if "tfidf+lr" in cell:
            text_cells += 1
            above += runs["auto"]["test_metric"] > cell["tfidf+lr"]["test_metric"]
    ok = "PASS" if not below_val else "FAIL"
    out = [
        f"{ok} no default run below its baseline on validation (where the guard acts): {', '.join(below_val) or 'none'}",
        f"{'PASS' if not below_test else 'FAIL'} ... and on test: {', '.join(below_test) or 'none'}",
    ]
    if total:
        out.append(f"{'PASS' if near >= 0.8 * total else 'FAIL'} auto within 1 point of the cell's best test metric: {near}/{total} cells")  # fmt: skip
        out.append(
            f"{'PASS' if cheap == total else 'FAIL'} auto's wall time <= full's (+5%): {cheap}/{total} cells"
        )
        out.append(
            f"{'PASS' if fewer_steps == total else 'FAIL'} auto's optimizer steps <= full's (a proxy for time "
            f"that does not move between identical runs): {fewer_steps}/{total} cells"
        )
    if text_cells:
        out.append(
            f"{'PASS' if above == text_cells else 'FAIL'} auto above TF-IDF + LR: {above}/{text_cells} text cells"
        )
    return out


def markdown(res: dict) -> str:
    lines = []
    for key, cell in res["cells"].items():
        metric = next((r["metric"] for r in cell.values() if "metric" in r), "f1_macro")
        lines.append(f"\n**{key}** (test {metric}; baseline: what the run prints beside itself)\n")
        lines.append(
            f"| contender | test {metric} | val {metric} | baseline (test, guard metric) | model kept | steps | wall s |"
        )
        lines.append("|---|---:|---:|---:|---|---:|---:|")
        for s, r in cell.items():
            if "baseline_validation_guard" in r:
                same = s != "auto" and r["strategy"] == cell.get("auto", {}).get("strategy")
                name = f"auto -> {r['strategy']}" if s == "auto" else s + (" (= auto)" if same else "")
                lines.append(
                    f"| {name} | {r['test_metric']:.3f} | {r['validation_metric']:.3f} | {r['baseline_test_guard']:.3f} "
                    f"({r['guard_metric']}) | {r['model']} | {r['steps']} | {r['wall_seconds']:.0f} |"
                )
            else:
                lines.append(f"| {s} (from scratch) | {r['test_metric']:.3f} | {r['validation_metric']:.3f} | | | | {r['wall_seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines + [""] + ["- " + v for v in verdicts(res)])


def summary(res: dict) -> str:
    """One row per cell: the test metric of every contender (* = the guard kept the baseline), auto's choice."""
    cols = ["from scratch", "baseline", "linear-probe", "head", "lp-ft", "full", "lora", "auto"]
    lines = [
        "| cell | metric | " + " | ".join(cols) + " | auto chose | auto s / full s |",
        "|---|---|" + "---:|" * len(cols) + "---|---:|",
    ]
    for key, cell in res["cells"].items():
        runs = {s: r for s, r in cell.items() if "baseline_validation_guard" in r}
        if not runs:
            continue
        any_run = next(iter(runs.values()))
        scratch_row = next((r for s, r in cell.items() if s not in runs), None)
        vals = [f"{scratch_row['test_metric']:.3f}" if scratch_row else "",
                f"{any_run['baseline_test_metric']:.3f}" if any_run.get("baseline_test_metric") is not None else ""]  # fmt: skip
        best = max(r["test_metric"] for r in runs.values())
        for c in cols[2:]:
            r = runs.get(c)
            if r is None:
                vals.append("")
                continue
            text = f"{r['test_metric']:.3f}" + ("*" if r["model"] == "pretrained_baseline" else "")
            vals.append(f"**{text}**" if r["test_metric"] == best else text)
        auto, full = runs.get("auto"), runs.get("full")
        ratio = f"{auto['wall_seconds']:.0f} / {full['wall_seconds']:.0f}" if auto and full else ""
        lines.append(
            f"| {key} | {any_run['metric']} | "
            + " | ".join(vals)
            + f" | {auto['strategy'] if auto else ''} | {ratio} |"
        )
    return "\n".join(lines + [""] + ["- " + v for v in verdicts(res)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["rotten_tomatoes", "vader_tweets"])
    ap.add_argument(
        "--budgets", nargs="+", default=["8", "32", "128"], help="labels per class (NER: sentences), or 'all'"
    )
    ap.add_argument(
        "--strategies", nargs="+", default=None, help="default: every default strategy of the kind"
    )
    ap.add_argument("--validation-rows", type=int, default=256)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=RESULTS / "bench_defaults.json")
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print the tables of the results so far and exit")
    ap.add_argument(
        "--summary", action="store_true", help="print one row per cell (the README table) and exit"
    )
    args = ap.parse_args()
    if not (args.markdown or args.summary):
        run_grid(args)
    res = load_results(args.results)
    print(
        "machines:",
        "; ".join(
            f"{m['date']} {m['cpu']} [{m.get('isa', '')}] ({m['cores']} cores)" for m in res["machines"]
        ),
    )
    print(summary(res) if args.summary else markdown(res))


if __name__ == "__main__":
    main()
