"""The ``memunlearn`` command line: thin wrappers over the library's public functions.

Each sub-command lives in its own module with ``add_parser(subparsers)`` that sets ``func``.
Every :class:`~memunlearn.errors.MemunlearnError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from ..errors import MemunlearnError
from . import run as run_command
from . import train as train_command
from . import localize as localize_command
from . import unlearn as unlearn_command
from . import memorization as memorization_command
from . import rum as rum_command

COMMANDS = [run_command, train_command, localize_command, unlearn_command, memorization_command, rum_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memunlearn", description="Memorization-aware machine unlearning for PyTorch classifiers."
    )
    parser.add_argument("--version", action="version", version=f"memunlearn {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MemunlearnError as exc:
        print(f"memunlearn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memunlearn: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
