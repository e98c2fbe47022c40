"""``transferkit`` commands: fit, evaluate, predict, generate, serve, export, compress, report, tasks,
backbones, strategies, datasets, config explain, env.

Each command is one thin module of this package (its parser and its ``cmd_*`` function); this module builds
the parser from them and dispatches. Every user mistake, and every failure of the machine's state (a
missing folder, a permission, a full disk) or of a file's content (YAML, JSON, encoding), ends in one line
on stderr and exit status 2 (:mod:`transferkit.cli.failures`); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

# The command modules import the library inside their functions, so importing them here keeps
# `transferkit --help` fast.
from transferkit.cli import (
    catalog,
    compare,
    compression,
    config,
    env,
    evaluate,
    fit,
    generate,
    predict,
    report,
    serve,
)
from transferkit.cli.failures import describe
from transferkit.errors import TransferkitError

# the order of the modules is the order of the commands in `transferkit --help`
COMMAND_MODULES = (
    fit,
    evaluate,
    predict,
    generate,
    serve,
    compression,
    compare,
    report,
    catalog,
    config,
    env,
)

COMMANDS = {
    "fit": fit.cmd_fit,
    "compare": compare.cmd_compare,
    "evaluate": evaluate.cmd_evaluate,
    "predict": predict.cmd_predict,
    "serve": serve.cmd_serve,
    "export": compression.cmd_export,
    "compress": compression.cmd_compress,
    "report": report.cmd_report,
    "generate": generate.cmd_generate,
    "tasks": catalog.cmd_tasks,
    "backbones": catalog.cmd_backbones,
    "strategies": catalog.cmd_strategies,
    "datasets": catalog.cmd_datasets,
    "config": config.cmd_config,
    "env": env.cmd_env,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transferkit", description="Transfer learning: fine-tune, evaluate, predict."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="less output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TensorFlow.*")


def _one_line(text: str) -> str:
    """Messages that quote a file's content can hold line breaks; the error stays one line."""
    return " ".join(text.split("\n")).strip()


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
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:  # the machine's state or a file's content (failures.describe), else a bug
        line = describe(err)
        if line is None or args.debug:
            raise
        print(f"error: {_one_line(line)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
