"""``transferkit generate``: complete prompts with a generation run, greedy or sampled, optionally streamed.

The library is imported inside ``cmd_generate`` so that ``transferkit --help`` does not load torch.
"""

from __future__ import annotations

from transferkit.errors import TransferkitError


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="complete prompts with a generation run")
    p.add_argument("run", help="run folder of a generation run")
    p.add_argument("--prompt", action="append", required=True, help="a prompt to complete (repeatable)")
    p.add_argument("--max-new-tokens", type=int, help="longest completion (default: the run's setting)")
    p.add_argument(
        "--temperature", type=float, default=0.0, help="0 is greedy decoding (default); above 0 samples"
    )
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass with --temperature > 0")
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    p.add_argument(
        "--precision", default="run", choices=["run", "auto", "fp32", "bf16", "fp16"],
        help="forward-pass precision: run (default: what the run trained at, so scores match its metrics), auto, fp32, bf16 or fp16 (CUDA)",
    )  # fmt: skip


def cmd_generate(args) -> int:
    from transferkit.api import load

    model = load(args.run, precision=args.precision)
    from transferkit.tasks import task_spec

    if task_spec(model.task).inputs != "prompt":
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
