"""``transferkit fit``: fine-tune, evaluate and write a run folder; the quick flags are config shortcuts.

The library is imported inside ``cmd_fit`` so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations

import argparse
import json

from transferkit.cli.common import _print
from transferkit.errors import TransferkitError

# quick-path flags -> config paths (the config path is authoritative; flags are shortcuts)
FLAG_PATHS = {
    "dataset": "data.dataset",
    "train": "data.train",
    "validation": "data.validation",
    "test": "data.test",
    "text_column": "data.text_column",
    "label_column": "data.label_column",
    "max_train_samples": "data.max_train_samples",
    "backbone": "backbone.name",
    "task": "task.type",
    "problem": "task.problem",
    "strategy": "strategy.name",
    "epochs": "training.epochs",
    "batch_size": "training.batch_size",
    "learning_rate": "training.learning_rate",
    "seed": "training.seed",
    "merge": "strategy.merge",
    "output": "output.dir",
}


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fine-tune a backbone and write a run folder",
        description="Fine-tune, evaluate and save. Flags are shortcuts for config fields; KEY=VALUE overrides any field (see `transferkit config explain`).",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. training.epochs=2 strategy.name=head",
    )
    p.add_argument(
        "--config", help="run YAML (data, backbone, task, head, strategy, training, evaluation, output)"
    )
    p.add_argument("--dataset", help="catalog data set (see `transferkit datasets`)")
    p.add_argument(
        "--train", help="training file: CSV, TSV, JSONL or Parquet (images: a folder, CSV or .npz)"
    )
    p.add_argument("--validation", help="validation file (default: split from --train)")
    p.add_argument("--test", help="test file (default: split from --train)")
    p.add_argument("--text-column", help="input text column (default: text)")
    p.add_argument("--label-column", help="label column (default: label)")
    p.add_argument("--max-train-samples", type=int, help="use at most N training examples")
    p.add_argument("--backbone", help="registered backbone, Hugging Face id or folder (default: minilm-l6)")
    p.add_argument("--task", help="task (default: text-classification)")
    p.add_argument("--problem", help="single_label, multi_label or regression")
    p.add_argument(
        "--strategy",
        help="transfer strategy (see `transferkit strategies`; default: auto, chosen from the data and printed)",
    )
    p.add_argument(
        "--epochs",
        type=float,
        help="training epochs (default: derived from the data: 3, but at least training.min_steps steps and at most training.max_epochs)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="training batch size (default: 32; n // 4, at least 8, on sets under 128 examples)",
    )
    p.add_argument("--learning-rate", type=float, help="peak learning rate of the trunk (default: 5e-5)")
    p.add_argument("--seed", type=int, help="seed (default: 42)")
    p.add_argument(
        "--merge",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="adapter strategies (lora, adalora, ia3): write the adapter merged into RUN/model (default) or, "
        "with --no-merge, keep the pretrained trunk there and the adapter in RUN/adapter only",
    )
    p.add_argument("--output", help="run folder to create (default: runs/<data>-<strategy>-<time>)")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run from its newest checkpoint (its saved config is used)",
    )


def _metric_keys(cfg, metrics: dict) -> list[str]:
    """Columns of the metrics table: the task's own (its spec), those the run has (classification or regression)."""
    from transferkit.tasks import task_spec

    return [k for k in task_spec(cfg.task.type).metric_keys if k in metrics["test"]]


def cmd_fit(args) -> int:
    from transferkit.api import fit
    from transferkit.config import load_config, parse_overrides
    from transferkit.evaluation import format_metrics_table

    flags = [
        f"{path}={json.dumps(getattr(args, key))}"
        for key, path in FLAG_PATHS.items()
        if getattr(args, key, None) is not None
    ]
    if args.resume:
        if flags or args.config:
            raise TransferkitError(
                "--resume RUN takes the run's saved config; give no other flags or --config (KEY=VALUE overrides are allowed)"
            )
        result = fit(resume=args.resume, overrides=args.overrides)
        cfg = load_config(f"{args.resume}/config.yaml")
    else:
        cfg = load_config(args.config, args.overrides, base=parse_overrides(flags))
        result = fit(cfg)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    m = result.metrics
    table = {"test": m["test"], "validation": m["validation"]}
    if "pretrained_baseline" in m:
        table["pretrained baseline: test"] = m["pretrained_baseline"]["test"]
    _print(format_metrics_table(table, keys=_metric_keys(cfg, m)))
    tr = m["training"]
    print(
        f"trainable parameters: {m['trainable_parameters']:,} of {m['total_parameters']:,}; {_training_summary(tr)}"
    )
    print(f"run folder: {result.run_dir}")
    return 0


def _training_summary(tr: dict) -> str:
    """What the training did, in words that fit the strategy: a closed-form probe ran no optimizer steps."""
    wall = f"wall {tr['wall_seconds']:.1f} s"
    if not tr.get("steps"):
        return f"closed-form fit on cached features (no optimizer steps), {wall}"
    return f"{tr['steps']} optimizer steps, {tr['train_samples_per_second']:,.1f} samples/s, {wall}"
