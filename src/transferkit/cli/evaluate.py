"""``transferkit evaluate``: metrics of a run on a labelled file, optionally written as JSON.

The library is imported inside ``cmd_evaluate`` so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations

import os

from transferkit.cli.common import _print
from transferkit.errors import TransferkitError

# table columns, in this order, of the metrics a non-token run reports
METRIC_KEYS = (
    "accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "mae",
    "rmse",
    "r2",
    "perplexity",
    "exact_match",
    "rouge_l",
    "num_examples",
)


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a run on a labelled file")
    p.add_argument("run", help="run folder")
    p.add_argument("--data", required=True, help="labelled file (CSV, TSV, JSONL, Parquet)")
    p.add_argument("--text-column", help="text column (default: text; token runs: the tokens column)")
    p.add_argument("--label-column", help="label column (default: label; token runs: the tags column)")
    p.add_argument("--path-column", default="path", help="image runs: column of image paths in a CSV")
    p.add_argument("--output", help="also write the metrics as JSON to this new file")


def _evaluate(model, inputs: str, args) -> dict:
    if inputs == "image":
        return model.evaluate(args.data, args.path_column, args.label_column or "label")
    if inputs == "tokens":  # --text-column / --label-column name the tokens / tags columns
        return model.evaluate(args.data, args.text_column, args.label_column)
    if inputs == "prompt":  # prompt / completion columns come from the run's settings
        return model.evaluate(args.data)
    return model.evaluate(args.data, args.text_column or "text", args.label_column or "label")


def cmd_evaluate(args) -> int:
    from transferkit.api import load
    from transferkit.evaluation import format_metrics_table
    from transferkit.utils.io import atomic_write_json

    if args.output and os.path.exists(args.output):
        raise TransferkitError(f"{args.output}: already exists; choose another --output")
    from transferkit.tasks import task_spec

    model = load(args.run)
    inputs = task_spec(model.task).inputs
    metrics = _evaluate(model, inputs, args)
    if inputs == "tokens":
        keys = [*task_spec(model.task).metric_keys, "num_sentences"]
    else:
        keys = [k for k in METRIC_KEYS if k in metrics]
    _print(format_metrics_table({args.data: metrics}, keys=keys))
    if args.output:
        if os.path.exists(args.output):
            raise TransferkitError(f"{args.output}: already exists; choose another --output")
        atomic_write_json(args.output, metrics)
    return 0
