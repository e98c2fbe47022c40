"""``transferkit export`` (ONNX) and ``transferkit compress`` (distil -> prune -> int8, with a report).

The library is imported inside the commands so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations


def add_parsers(sub) -> None:
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


def cmd_export(args) -> int:
    from transferkit.compression import export_run
    from transferkit.manifest import read_run_json

    folder = export_run(args.run, args.output, args.opset)
    diff = read_run_json(folder / "export.json").get("max_abs_diff")
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
