"""The ``memunlearn`` command line: thin wrappers over the library's public functions.

Each sub-command lives in its own module with ``add_parser(subparsers)`` that sets ``func``.
Every :class:`~memunlearn.errors.MemunlearnError` (and every bad option) becomes one line on
stderr and exit code 2; warnings (a damaged cache entry that is rebuilt, ...) become one line
each. The parsers import nothing heavy: torch is imported only when a command runs.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..errors import MemunlearnError
from ..io import cache_root, written_files
from . import run as run_command
from . import train as train_command
from . import localize as localize_command
from . import unlearn as unlearn_command
from . import memorization as memorization_command
from . import rum as rum_command
from . import report as report_command
from . import tune as tune_command
from . import audit as audit_command
from . import methods as methods_command
from .common import Parser

COMMANDS = [run_command, tune_command, train_command, localize_command, unlearn_command, memorization_command,
            rum_command, report_command, methods_command, audit_command]


def build_parser() -> Parser:
    parser = Parser(prog="memunlearn", description="Memorization-aware machine unlearning for PyTorch classifiers.")
    parser.add_argument("--version", action="version", version=f"memunlearn {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"memunlearn: warning: {message}", file=sys.stderr, flush=True)


def interrupted_message(written: list[Path], cache: Path | None = None) -> str:
    """What an interrupt kept: the files finished (complete, renamed into place) before it.

    Example:
        >>> interrupted_message([])
        'memunlearn: interrupted; nothing was written'
        >>> interrupted_message([Path("/c/checkpoints/original-1.safetensors")], cache=Path("/c"))
        'memunlearn: interrupted; kept 1 complete file written before the interrupt (1 in the cache /c, reused by the next run): /c/checkpoints/original-1.safetensors'
    """
    if not written:
        return "memunlearn: interrupted; nothing was written"
    unique = list(dict.fromkeys(written))
    in_cache = [p for p in unique if cache is not None and _is_under(p, cache)]
    text = f"memunlearn: interrupted; kept {len(unique)} complete file{'s' if len(unique) != 1 else ''} written before the interrupt"
    if in_cache:
        text += f" ({len(in_cache)} in the cache {cache}, reused by the next run)"
    shown = ", ".join(str(p) for p in unique[:5])
    return text + f": {shown}" + (f", ... ({len(unique) - 5} more)" if len(unique) > 5 else "")


def _is_under(path: Path, root: Path) -> bool:
    try:
        Path(path).absolute().relative_to(Path(root).absolute())
        return True
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad option (already reported in one line)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    written_before = len(written_files())
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except MemunlearnError as exc:
            print(f"memunlearn: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            cache = cache_root(getattr(args, "cache_dir", None))
            print(interrupted_message(written_files(written_before), cache), file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
