"""``transferkit`` commands: fit, evaluate, predict, generate, serve, export, compress, tasks, backbones,
strategies, datasets, config explain.

Every user mistake ends in one line on stderr and exit status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from transferkit.errors import TransferkitError

TOKEN_KEYS = ["f1", "precision", "recall", "f1_macro", "accuracy"]  # table columns of token runs

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


def _add_fit(sub) -> None:
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
    p.add_argument("--strategy", help="transfer strategy (see `transferkit strategies`; default: full)")
    p.add_argument("--epochs", type=float, help="training epochs (default: 3)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: 32)")
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


def _add_serve(sub) -> None:
    from transferkit.serving.settings import API_KEYS_ENV, add_arguments

    p = sub.add_parser(
        "serve",
        help="serve a run over HTTP (FastAPI + uvicorn, micro-batching, metrics, a page at /)",
        description=f"Serve RUN: POST /v1/predict, GET /healthz /readyz /v1/model /metrics /openapi.json and a page at /. "
        f"API keys: ${API_KEYS_ENV} (comma-separated) or --api-key-file; required off loopback.",
    )
    p.add_argument("run", help="run folder")
    add_arguments(p)


def _add_compression(sub) -> None:
    p = sub.add_parser("export", help="export a run to ONNX (servable through onnxruntime)")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default: onnx)")
    p.add_argument("--output", help="folder to create (default: RUN-onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p = sub.add_parser(
        "compress",
        help="int8 quantization, pruning and/or distillation, with a before/after report",
        description="Stages run in the order distil -> prune -> int8; the result is a new folder with report.json.",
    )
    p.add_argument("run", help="run folder")
    p.add_argument(
        "--int8", action="store_true", help="ONNX export + dynamic int8 quantization (onnxruntime)"
    )
    p.add_argument(
        "--prune", type=float, metavar="FRACTION", help="zero this fraction of each encoder linear layer"
    )
    p.add_argument("--prune-method", choices=["magnitude", "structured"], default="magnitude")
    p.add_argument("--recover-epochs", type=float, default=0.0, help="fine-tune after pruning (default: 0)")
    p.add_argument("--distil-to", metavar="BACKBONE", help="distil into this student backbone")
    p.add_argument("--distil-epochs", type=float, default=2.0, help="distillation epochs (default: 2)")
    p.add_argument("--student-layers", type=int, help="keep only this many blocks of the student")
    p.add_argument("--data", help="labelled file to measure on (default: the run's test split)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--output", help="folder to create (default: RUN-<stages>)")
    p.add_argument(
        "--repeats", type=int, default=10, help="timed calls per latency measurement (default: 10)"
    )


def _add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_fit(sub)
    p = sub.add_parser("evaluate", help="metrics of a run on a labelled file")
    p.add_argument("run", help="run folder")
    p.add_argument("--data", required=True, help="labelled file (CSV, TSV, JSONL, Parquet)")
    p.add_argument("--text-column", help="text column (default: text; token runs: the tokens column)")
    p.add_argument("--label-column", help="label column (default: label; token runs: the tags column)")
    p.add_argument("--path-column", default="path", help="image runs: column of image paths in a CSV")
    p.add_argument("--output", help="also write the metrics as JSON to this new file")
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
    p = sub.add_parser("generate", help="complete prompts with a generation run")
    p.add_argument("run", help="run folder of a generation run")
    p.add_argument("--prompt", action="append", required=True, help="a prompt to complete (repeatable)")
    p.add_argument("--max-new-tokens", type=int, help="longest completion (default: the run's setting)")
    p.add_argument(
        "--temperature", type=float, default=0.0, help="0 is greedy decoding (default); above 0 samples"
    )
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass with --temperature > 0")
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    _add_serve(sub)
    _add_compression(sub)
    sub.add_parser("tasks", help="list tasks (--task NAME)")
    sub.add_parser("backbones", help="list registered backbones")
    sub.add_parser("strategies", help="list transfer strategies and their settings")
    p = sub.add_parser("datasets", help="list or fetch catalog data sets")
    p.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    p.add_argument("names", nargs="*", help="data sets to fetch")
    p.add_argument("--all", action="store_true", help="fetch every catalog data set")
    p = sub.add_parser("config", help="explain every config field")
    p.add_argument("action", choices=["explain"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transferkit", description="Transfer learning: fine-tune, evaluate, predict."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="less output")
    _add_commands(parser)
    return parser


def _table(title: str, rows: list[tuple], headers: tuple):
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for h in headers:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*map(str, r))
    return t


def _print(obj) -> None:
    from rich.console import Console

    Console().print(obj)


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
    keys = (
        ["accuracy", "f1_macro", "precision_macro", "recall_macro"]
        if cfg.task.problem != "regression"
        else ["mae", "rmse", "r2"]
    )
    if cfg.task.type == "token-classification":
        keys = TOKEN_KEYS
    elif cfg.task.type == "generation":
        keys = ["perplexity", "exact_match", "rouge_l"]
    _print(format_metrics_table(table, keys=keys))
    tr = m["training"]
    print(
        f"trainable parameters: {m['trainable_parameters']:,} of {m['total_parameters']:,}; {tr['steps']} steps, {tr['train_samples_per_second']} samples/s, wall {tr['wall_seconds']:.1f} s"
    )
    print(f"run folder: {result.run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from transferkit.evaluation import format_metrics_table
    from transferkit.predictor import load
    from transferkit.utils.io import atomic_write_json

    if args.output and os.path.exists(args.output):
        raise TransferkitError(f"{args.output}: already exists; choose another --output")
    model = load(args.run)
    if model.task == "image-classification":
        metrics = model.evaluate(args.data, args.path_column, args.label_column or "label")
    elif (
        model.task == "token-classification"
    ):  # --text-column / --label-column name the tokens / tags columns
        metrics = model.evaluate(args.data, args.text_column, args.label_column)
    elif model.task == "generation":  # prompt / completion columns come from the run's settings
        metrics = model.evaluate(args.data)
    else:
        metrics = model.evaluate(args.data, args.text_column or "text", args.label_column or "label")
    keys = (
        TOKEN_KEYS + ["num_sentences"]
        if model.task == "token-classification"
        else [
            k
            for k in (
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
            if k in metrics
        ]
    )
    _print(format_metrics_table({args.data: metrics}, keys=keys))
    if args.output:
        if os.path.exists(args.output):
            raise TransferkitError(f"{args.output}: already exists; choose another --output")
        atomic_write_json(args.output, metrics)
    return 0


def cmd_predict(args) -> int:
    from transferkit.predictor import load

    model = load(args.run)
    if model.task == "image-classification":
        return _predict_images(model, args)
    if args.image:
        raise TransferkitError(f"{args.run}: a {model.task} run; --image is for image-classification runs")
    tokens = model.task == "token-classification"
    if args.text and model.task == "generation":  # the completion must not replace the prompt under "text"
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


def cmd_serve(args) -> int:
    from transferkit.serving.server import serve
    from transferkit.serving.settings import settings_from_args

    logging.getLogger("transferkit.serving").setLevel(logging.INFO)
    serve(args.run, settings_from_args(args))
    return 0


def cmd_export(args) -> int:
    from transferkit.compression import export_run

    folder = export_run(args.run, args.output, args.opset)
    diff = json.loads((folder / "export.json").read_text()).get("max_abs_diff")
    print(f"exported {args.run} -> {folder} (max |onnx - torch| logit difference {diff:.2e})")
    return 0


def cmd_compress(args) -> int:
    from transferkit.compression import compress_run

    result = compress_run(
        args.run, int8=args.int8, prune=args.prune, prune_method=args.prune_method,
        recover_epochs=args.recover_epochs, distil_to=args.distil_to, distil_epochs=args.distil_epochs,
        student_layers=args.student_layers, data=args.data, text_column=args.text_column,
        label_column=args.label_column, output=args.output, repeats=args.repeats,
    )  # fmt: skip
    print(result.table)
    print(f"compressed folder: {result.folder} (report: {result.folder / 'report.json'})")
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


def cmd_generate(args) -> int:
    from transferkit.predictor import load

    model = load(args.run)
    if getattr(model, "task", None) != "generation":
        raise TransferkitError(
            f"{args.run}: a {model.task} run; `generate` needs a generation run (--task generation)"
        )
    kwargs = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p}
    for prompt in args.prompt:
        if args.stream:
            for piece in model.stream(prompt, **kwargs):
                print(piece, end="", flush=True)
            print()
        else:
            print(model.generate(prompt, **kwargs))
    return 0


def cmd_tasks(args) -> int:
    from transferkit.tasks import task_module, task_names

    rows = [(name, task_module(name).DESCRIPTION) for name in task_names()]
    _print(_table("tasks (--task NAME or task.type)", rows, ("name", "description")))
    return 0


def cmd_backbones(args) -> int:
    from transferkit.backbones import BACKBONES

    rows = [(e.name, e.description) for e in BACKBONES]
    _print(_table("backbones (or any Hugging Face model id / local folder)", rows, ("name", "description")))
    return 0


def cmd_strategies(args) -> int:
    from transferkit.strategies import STRATEGIES

    rows = []
    for e in STRATEGIES:
        fields = e.obj.settings.model_fields
        settings = ", ".join(f"{n}={f.default!r}" for n, f in fields.items()) or "-"
        rows.append((e.name, e.description, settings))
    _print(
        _table(
            "transfer strategies (--strategy NAME; settings as strategy.KEY=VALUE)",
            rows,
            ("name", "description", "settings"),
        )
    )
    return 0


def cmd_datasets(args) -> int:
    from transferkit.data import DATASETS, fetch_dataset

    if args.action == "fetch":
        names = DATASETS.names() if args.all else args.names
        if not names:
            raise TransferkitError("datasets fetch: name data sets or give --all")
        for name in names:
            DATASETS.get(name)  # clear error for an unknown name
            print(f"{name}: {fetch_dataset(name)}")
        return 0
    rows = [(e.name, e.description) for e in DATASETS]
    _print(_table("catalog data sets (--dataset NAME)", rows, ("name", "description")))
    return 0


def cmd_config(args) -> int:
    from transferkit.config import explain
    from transferkit.strategies import STRATEGIES

    rows = [(path, default, desc) for path, default, desc in explain()]
    for e in STRATEGIES:
        for name, f in e.obj.settings.model_fields.items():
            rows.append((f"strategy.{name}  [{e.name}]", repr(f.default), f.description or ""))
    _print(
        _table(
            "run configuration fields (YAML keys; override with KEY=VALUE)",
            rows,
            ("field", "default", "description"),
        )
    )
    return 0


COMMANDS = {
    "fit": cmd_fit,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "serve": cmd_serve,
    "export": cmd_export,
    "compress": cmd_compress,
    "generate": cmd_generate,
    "tasks": cmd_tasks,
    "backbones": cmd_backbones,
    "strategies": cmd_strategies,
    "datasets": cmd_datasets,
    "config": cmd_config,
}


def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TensorFlow.*")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``transferkit`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "urllib3", "accelerate", "filelock", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        _quiet_libraries()
        return COMMANDS[args.command](args)
    except TransferkitError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
