"""``memunlearn report``: one self-contained HTML page (or markdown tables) from a results file."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write report.html (or markdown tables) from a run directory or a results file",
        description="Write one self-contained HTML page (plots inline, no network) from a run's results.json, "
        "or its tables as markdown. Example: memunlearn report runs/x  (writes runs/x/report.html)",
    )
    parser.add_argument("results", metavar="RUN_DIR|RESULTS.json",
                        help="a run directory holding results.json, a results.json, or a benchmark's JSON")
    parser.add_argument("--out", help="file to write (default: report.html/report.md next to results.json, "
                        "NAME.html/NAME.md next to any other NAME.json); a directory gets report.html inside")
    parser.add_argument("--format", choices=("html", "md"), default="html",
                        help="html (default): the page with plots; md: the same tables as markdown")
    parser.set_defaults(func=report)


def report(args: argparse.Namespace) -> int:
    from ..report import write_report

    path = write_report(args.results, args.out, fmt=args.format)
    print(f"report written to {path}")
    return 0
