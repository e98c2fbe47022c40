"""``transferkit evaluate``: metrics of a run on a labelled file, optionally written as JSON.

The library is imported inside ``cmd_evaluate`` so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations

import os

from transferkit.cli.common import _print
from transferkit.errors import TransferkitError


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a run on a labelled file")
    p.add_argument("run", help="run folder")
    p.add_argument("--data", required=True, help="labelled file (CSV, TSV, JSONL, Parquet)")
    p.add_argument("--text-column", help="input column (default: text; token runs: the tokens column; generation: the prompt field)")  # fmt: skip
    p.add_argument("--label-column", help="label column (default: label; token runs: the tags column; generation: the completion field)")  # fmt: skip
    p.add_argument("--path-column", help="image runs: column of image paths in a CSV (default: path)")
    p.add_argument("--output", help="also write the metrics as JSON to this new file")
    p.add_argument(
        "--precision", default="run", choices=["run", "auto", "fp32", "bf16", "fp16"],
        help="forward-pass precision: run (default: what the run trained at, so scores match its metrics), auto, fp32, bf16 or fp16 (CUDA)",
    )  # fmt: skip


def cmd_evaluate(args) -> int:
    from transferkit.api import load
    from transferkit.evaluation import format_metrics_table
    from transferkit.utils.io import atomic_write_json

    if args.output and os.path.exists(args.output):
        raise TransferkitError(f"{args.output}: already exists; choose another --output")
    from transferkit.tasks import task_spec

    model = load(args.run, precision=args.precision)
    spec = task_spec(model.task)
    column = args.path_column if spec.inputs == "image" else args.text_column
    metrics = model.evaluate(args.data, column, args.label_column)  # None: the task's own column
    keys = [k for k in (*spec.metric_keys, "num_examples", "num_sentences") if k in metrics]
    _print(format_metrics_table({args.data: metrics}, keys=keys))
    if args.output:
        try:  # exclusive: also refuses a file that appeared while the run evaluated
            atomic_write_json(args.output, metrics, exclusive=True)
        except FileExistsError:
            raise TransferkitError(f"{args.output}: already exists; choose another --output") from None
    return 0
