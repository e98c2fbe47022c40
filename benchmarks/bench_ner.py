"""Named-entity recognition on CoNLL-2003 with MiniLM-L6: transferkit ``full`` and ``lora`` beside the
Hugging Face token-classification recipe (Trainer + DataCollatorForTokenClassification), same data, epochs,
batch size and learning rate.

Contenders (each in a fresh Python process, see ``common.run_worker``):

  tk_full   ``transferkit.fit(dataset="conll2003", strategy="full")``: windows instead of truncation,
            validation after every epoch, best state restored, run folder with the exported model.
  tk_lora   the same with ``strategy="lora"`` (adapters at lr x 10, merged on export).
  hf_full   the recipe of transformers' ``run_ner.py``: words tokenised with ``is_split_into_words``,
            label on the first sub-token, -100 elsewhere, ``truncation=True``; ``Trainer`` with
            ``DataCollatorForTokenClassification`` and length-grouped batches, no evaluation while training;
            ``trainer.predict(test)`` keeps the positions whose label is not -100 (as ``run_ner.py`` does).

Every contender's test predictions are scored by the same function (seqeval, strict IOB2, entity micro F1)
on the official test sentences (``--max-eval-samples`` to use fewer). Printed: F1 and wall time per
contender, the time ratio Trainer / transferkit full and the F1 difference; results go to
``benchmarks/results/ner.json`` (``ner-quick.json`` for ``--quick``).

    python benchmarks/bench_ner.py                         # the whole benchmark (hours on 2 CPU cores)
    python benchmarks/bench_ner.py --quick                 # smoke run: 64 sentences, 1 epoch
    python benchmarks/bench_ner.py --max-train-samples 2000 --epochs 2 --only tk_full,hf_full
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SCRIPT = Path(__file__).resolve()
CONTENDERS = ("tk_full", "tk_lora", "hf_full")


def _config(args, strategy: str, tmp: str):
    from transferkit.config import load_config

    overrides = [
        "data.dataset=conll2003", "task.type=token-classification", "backbone.name=minilm-l6",
        f"backbone.max_length={args.max_length}", f"strategy.name={strategy}", f"training.epochs={args.epochs}",
        f"training.batch_size={args.batch_size}", f"training.learning_rate={args.learning_rate}",
        f"training.seed={args.seed}", "training.progress=false", "evaluation.pretrained_baseline=false",
        "output.tensorboard=false", f"output.dir={tmp}/run",
    ]  # fmt: skip
    if args.max_train_samples:
        overrides.append(f"data.max_train_samples={args.max_train_samples}")
    if args.max_eval_samples:
        overrides.append(f"data.max_eval_samples={args.max_eval_samples}")
    return load_config(None, overrides)


def _transferkit(args, strategy: str) -> dict:
    import transferkit

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(args, strategy, tmp)
        t0 = time.perf_counter()
        run = transferkit.fit(cfg)
        wall = time.perf_counter() - t0
    m, tr = run.metrics, run.metrics["training"]
    return {
        "wall_s": wall, "train_s": tr["train_seconds"], "f1": m["test"]["f1"], "precision": m["test"]["precision"],
        "recall": m["test"]["recall"], "per_type": {k: v["f1"] for k, v in m["test"]["per_type"].items()},
        "validation_f1": m["validation"]["f1"], "steps": tr["steps"], "trainable_parameters": m["trainable_parameters"],
        "test_sentences": m["test"]["num_sentences"], "windows_split": tr["windows_split"],
    }  # fmt: skip


def worker_tk_full(args) -> dict:
    return _transferkit(args, "full")


def worker_tk_lora(args) -> dict:
    return _transferkit(args, "lora")


def worker_hf_full(args) -> dict:
    """transformers' run_ner.py recipe on the very sentences transferkit trains and tests on."""
    import numpy as np
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from transferkit.backbones.hf_text import minilm_folder
    from transferkit.evaluation.ner import entity_metrics
    from transferkit.tasks.token_classification.sources import load_token_splits

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        splits = load_token_splits(_config(args, "full", tmp))
        labels = splits.labels
        index = {n: i for i, n in enumerate(labels)}
        tok = AutoTokenizer.from_pretrained(str(minilm_folder()))
        model = AutoModelForTokenClassification.from_pretrained(
            str(minilm_folder()), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index
        )

        def encode(frame) -> list[dict]:
            enc = tok(
                frame["tokens"].tolist(),
                is_split_into_words=True,
                truncation=True,
                max_length=args.max_length,
            )
            rows = []
            for i, tags in enumerate(frame["tags"]):
                previous, ids = None, []
                for w in enc.word_ids(i):
                    ids.append(-100 if w is None or w == previous else index[tags[w]])
                    previous = w
                rows.append({**{k: enc[k][i] for k in enc}, "labels": ids})
            return rows

        train, test = encode(splits.train), encode(splits.test)
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128,
            num_train_epochs=args.epochs, learning_rate=args.learning_rate, weight_decay=0.01, warmup_steps=0.06,
            seed=args.seed, eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none",
            disable_tqdm=True, train_sampling_strategy="group_by_length",
        )  # fmt: skip
        trainer = Trainer(
            model=model, args=targs, train_dataset=train, processing_class=tok,
            data_collator=DataCollatorForTokenClassification(tok),
        )  # fmt: skip
        t1 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t1
        pred = trainer.predict(test)
    best = np.argmax(pred.predictions, axis=-1)
    true_tags, pred_tags = [], []
    for p_row, l_row in zip(best, pred.label_ids, strict=True):  # run_ner.py: keep positions with a label
        keep = l_row != -100
        true_tags.append([labels[i] for i in l_row[keep]])
        pred_tags.append([labels[i] for i in p_row[keep]])
    m = entity_metrics(true_tags, pred_tags, "iob2")
    cut = sum(len(t) for t in splits.test["tags"]) - sum(len(t) for t in true_tags)
    return {
        "wall_s": time.perf_counter() - t0, "train_s": train_s, "f1": m["f1"], "precision": m["precision"],
        "recall": m["recall"], "per_type": {k: v["f1"] for k, v in m["per_type"].items()},
        "test_sentences": len(true_tags), "test_words_truncated": cut,
        "note": "run_ner.py recipe; words cut by truncation are left out of its score, as run_ner.py does",
    }  # fmt: skip


WORKERS = {"tk_full": worker_tk_full, "tk_lora": worker_tk_lora, "hf_full": worker_hf_full}


def report(runs: dict) -> list[str]:
    lines = [f"{'contender':<10} {'test F1':>8} {'wall s':>9} {'train s':>9}"]
    for name, r in runs.items():
        if "error" in r:
            lines.append(f"{name:<10} {r['error']}")
            continue
        lines.append(f"{name:<10} {r['f1']:>8.4f} {r['wall_s']:>9.1f} {r['train_s']:>9.1f}")
    ours, theirs = runs.get("tk_full", {}), runs.get("hf_full", {})
    if "f1" in ours and "f1" in theirs:
        lines.append(
            f"time ratio Trainer / transferkit full: {theirs['wall_s'] / ours['wall_s']:.2f}x (wall); "
            f"F1 difference transferkit - Trainer: {ours['f1'] - theirs['f1']:+.4f}"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--max-train-samples", type=int, default=None, help="training sentences (default: all 14,041)"
    )
    ap.add_argument(
        "--max-eval-samples", type=int, default=None, help="validation and test sentences each (default: all)"
    )
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=1e-4, help="trunk lr (lora adapters: x10)")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    common.add_contender_args(ap, CONTENDERS, "smoke run: 64 train / 32 eval sentences, 1 epoch")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_train_samples, args.max_eval_samples, args.epochs = 64, 32, 1
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return common.contenders_main(SCRIPT, argv, parse_args(argv), WORKERS, report, "ner")


if __name__ == "__main__":
    sys.exit(main())
