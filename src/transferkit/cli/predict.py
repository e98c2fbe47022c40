"""``transferkit predict``: predictions of a run for texts, images or a file, as JSON lines or a new file.

The library is imported inside the functions so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from transferkit.errors import TransferkitError


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="predict texts or a file with a run")
    p.add_argument("run", help="run folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    src.add_argument("--image", action="append", help="an image file to classify (repeatable; image runs)")
    src.add_argument(
        "--input", help="file of texts, or of image paths for image runs (CSV, TSV, JSONL, Parquet)"
    )
    p.add_argument("--output", help="where --input predictions go (a new file; default: print JSON lines)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--path-column", default="path", help="image runs: column of image paths in --input")


def cmd_predict(args) -> int:
    from transferkit.api import load
    from transferkit.tasks import task_spec

    model = load(args.run)
    inputs = task_spec(model.task).inputs
    if inputs == "image":
        return _predict_images(model, args)
    if args.image:
        raise TransferkitError(f"{args.run}: a {model.task} run; --image is for image-classification runs")
    tokens = inputs == "tokens"
    if args.text and inputs == "prompt":  # the completion must not replace the prompt under "text"
        for text, pred in zip(args.text, model.predict(args.text), strict=True):
            print(json.dumps({"prompt": text, "completion": pred["text"]}, ensure_ascii=False))
        return 0
    if args.text:
        for text, pred in zip(args.text, model.predict(args.text), strict=True):
            print(json.dumps({"text": text, **({"entities": pred} if tokens else pred)}, ensure_ascii=False))
        return 0
    if tokens:  # entity spans of raw texts, token lists or a CoNLL file, as JSON lines
        if args.output:
            print(f"wrote {model.predict_file(args.input, args.output, args.text_column)}")
        else:
            for row in model.predict_rows(args.input, args.text_column):
                print(json.dumps(row, ensure_ascii=False, default=str))
        return 0
    if args.output:
        out = model.predict_file(args.input, args.output, args.text_column)
        print(f"wrote {out}")
        return 0
    return _predict_table(model, args)


def _predict_table(model, args) -> int:
    """Texts of one column of ``--input``, printed with their predictions as JSON lines."""
    from transferkit.data.readers import read_table
    from transferkit.errors import DataError

    frame = read_table(args.input)
    if args.text_column not in frame.columns:
        raise DataError(
            f"{args.input}: no column {args.text_column!r} (columns: {', '.join(map(str, frame.columns))}); set --text-column"
        )
    texts = frame[args.text_column].astype(str).tolist()
    for text, pred in zip(texts, model.predict(texts), strict=True):
        print(json.dumps({"text": text, **pred}, ensure_ascii=False))
    return 0


def _predict_images(model, args) -> int:
    if args.text:
        raise TransferkitError(f"{args.run}: an image-classification run; give --image PATH or --input FILE")
    if args.output:
        print(f"wrote {model.predict_file(args.input, args.output, args.path_column)}")
        return 0
    if args.image:
        paths = args.image
    else:
        from transferkit.data.images import read_image_csv

        paths = read_image_csv(Path(args.input), args.path_column, None)["text"].tolist()
    for path, pred in zip(paths, model.predict(paths), strict=True):
        print(json.dumps({"image": path, **pred}, ensure_ascii=False))
    return 0
