"""`snnrobust` command line: a thin layer over the Python API.

Each subcommand lives in ``cli/cmd_<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. User errors
(:class:`~snnrobust.errors.SnnRobustError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__, distributed
from ..errors import SnnRobustError
from . import (
    cmd_attack, cmd_convert, cmd_datasets, cmd_demo, cmd_eval, cmd_gradients, cmd_models, cmd_results, cmd_study,
    cmd_train,
)

#: The subcommands that run as one job split over the processes torchrun starts.
DISTRIBUTED = ("train", "attack", "study")
#: The subcommands in the order ``--help`` lists them.
COMMANDS = [cmd_demo, cmd_train, cmd_convert, cmd_eval, cmd_attack, cmd_gradients, cmd_study, cmd_results, cmd_models,
            cmd_datasets]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnrobust",
        description="Train spiking neural networks and measure, reliably, how robust they are to adversarial inputs.",
    )
    parser.add_argument("--version", action="version", version=f"snnrobust {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        if distributed.launched():
            if args.command not in DISTRIBUTED:
                raise SnnRobustError(f"snnrobust {args.command} does not run under torchrun; run it as one process "
                                     f"(torchrun can start: {', '.join(DISTRIBUTED)})")
            distributed.init_from_env()
            if not distributed.is_main():  # one voice: rank 0 prints; every rank still reports errors
                sys.stdout = open(os.devnull, "w")
        return int(args.func(args) or 0)
    except SnnRobustError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed work is saved (re-run the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
