"""``transferkit predict``: predictions of a run for texts, images or a file, as JSON lines or a new file.

Every task goes through the same two calls of the predictor contract (:mod:`transferkit.predictors`):
``predict`` for ``--text`` / ``--image`` and ``predict_file`` for ``--input``. The library is imported inside
the functions so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from transferkit.errors import TransferkitError

# one JSON line per --text / --image, by the task spec's ``inputs``: the input beside its prediction
LINE = {
    "text": lambda x, pred: {"text": x, **pred},
    "tokens": lambda x, pred: {"text": x, "entities": pred},
    "image": lambda x, pred: {"image": x, **pred},
    "prompt": lambda x, pred: {"prompt": x, "completion": pred["text"]},  # not "text": that is the prompt
}


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="predict texts or a file with a run")
    p.add_argument("run", help="run folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    src.add_argument("--image", action="append", help="an image file to classify (repeatable; image runs)")
    src.add_argument(
        "--input", help="file of texts, or of image paths for image runs (CSV, TSV, JSONL, Parquet)"
    )
    p.add_argument(
        "--output", help="where --input predictions go (a new file; default: print its rows as JSON lines)"
    )
    p.add_argument("--text-column", help="input column (default: text; token runs: tokens, else text; generation: the prompt field)")  # fmt: skip
    p.add_argument("--path-column", help="image runs: column of image paths in --input (default: path)")
    p.add_argument(
        "--precision", default="run", choices=["run", "auto", "fp32", "bf16", "fp16"],
        help="forward-pass precision: run (default: what the run trained at, so scores match its metrics), auto, fp32, bf16 or fp16 (CUDA)",
    )  # fmt: skip


def cmd_predict(args) -> int:
    from transferkit.api import load
    from transferkit.tasks import task_spec

    model = load(args.run, precision=args.precision)
    inputs = task_spec(model.task).inputs
    images = inputs == "image"
    if images and args.text:
        raise TransferkitError(f"{args.run}: an image-classification run; give --image PATH or --input FILE")
    if args.image and not images:
        raise TransferkitError(f"{args.run}: a {model.task} run; --image is for image-classification runs")
    given = args.image if images else args.text
    if given:
        for item, pred in zip(given, model.predict(given), strict=True):
            print(json.dumps(LINE[inputs](item, pred), ensure_ascii=False))
        return 0
    column = args.path_column if images else args.text_column  # None: the task's own column
    if args.output:
        print(f"wrote {model.predict_file(args.input, args.output, column)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:  # the rows --output would hold, printed
        out = model.predict_file(args.input, Path(tmp) / "predictions.jsonl", column)
        sys.stdout.write(out.read_text(encoding="utf-8"))
    return 0
