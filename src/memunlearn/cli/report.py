"""``memunlearn report``: one self-contained HTML page (or markdown tables) from a results file."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


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
                        "NAME.html/NAME.md next to any other NAME.json); a directory gets report.html inside; "
                        "never the results file itself")
    parser.add_argument("--format", choices=("html", "md"), default="html",
                        help="html (default): the page with plots; md: the same tables as markdown")
    parser.set_defaults(func=report)


def report(args: argparse.Namespace) -> int:
    import warnings

    from ..errors import DataError
    from ..io import check_output_file
    from ..report import write_report
    from ..report.write import default_output

    source = Path(args.results)
    results_file = source / "results.json" if source.is_dir() else source
    out = Path(args.out) if args.out else default_output(source, args.format)
    if out.is_dir():
        out = out / f"report.{args.format}"
    check_output_file(out, "--out", inputs=[results_file])
    if results_file.is_file():
        from ..experiment.spec import read_json_file

        try:
            raw = read_json_file(results_file, "results file")
        except Exception as exc:  # ConfigError: the report's own reader says DataError for the same problems
            raise DataError(str(exc)) from None
        for line in check_results_payload(raw, results_file):
            warnings.warn(line, stacklevel=2)
    path = write_report(args.results, out, fmt=args.format)
    print(f"report written to {path}")
    return 0


_STATS = ("mean", "half_width", "low", "high", "std", "n")
_METRIC_TABLES = ("metrics", "vs_oracle")


def check_results_payload(raw: Any, path: Path) -> list[str]:
    """Check a run's results for values a report cannot show: a future format, or strings (and
    other non-numbers) where the statistics and metrics are numbers.

    Returns:
        Warnings: NaN or infinite values (written by an older, non-strict writer), shown as n/a.

    Raises:
        DataError: a format newer than this version reads, or a non-number where a number belongs.
    """
    from ..errors import DataError
    from ..experiment.spec import check_results_format

    if not isinstance(raw, dict) or "groups" not in raw:
        return []  # a benchmark's JSON: its own reader checks it
    try:
        check_results_format(raw, path)
    except Exception as exc:
        raise DataError(str(exc)) from None
    groups = raw["groups"]
    if not isinstance(groups, list):
        return []  # the report's reader names this shape problem
    non_finite: list[str] = []

    def number(value: Any, where: str) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(f"{path}: {where} should be a number or null, found {type(value).__name__} {value!r:.40}")
        if isinstance(value, float) and not math.isfinite(value):
            non_finite.append(where)

    for g, group in enumerate(groups):
        if not isinstance(group, dict):
            continue
        summary = group.get("summary")
        if isinstance(summary, dict):
            for row, metrics in summary.items():
                if not isinstance(metrics, dict):
                    raise DataError(f"{path}: groups[{g}].summary.{row} should be a table of statistics, found "
                                    f"{type(metrics).__name__}")
                for metric, stats in metrics.items():
                    where = f"groups[{g}].summary.{row}.{metric}"
                    if isinstance(stats, dict):
                        for key in _STATS:
                            number(stats.get(key), f"{where}.{key}")
                    elif not isinstance(stats, (str, list)) or isinstance(stats, bool):
                        number(stats, where)
                    else:
                        raise DataError(f"{path}: {where} should be a table of statistics, found "
                                        f"{type(stats).__name__} {stats!r:.40}")
        for s, row in enumerate(group.get("per_seed") or []):
            if not isinstance(row, dict):
                continue
            entries = [(name, row.get(name)) for name in ("oracle", "original", "noise_floor")]
            entries += list((row.get("methods") or {}).items()) if isinstance(row.get("methods"), dict) else []
            for name, entry in entries:
                if not isinstance(entry, dict):
                    continue
                for table in _METRIC_TABLES:
                    values = entry.get(table)
                    if isinstance(values, dict):
                        for key, value in values.items():
                            if not isinstance(value, (dict, list)):
                                number(value, f"groups[{g}].per_seed[{s}].{name}.{table}.{key}")
    if non_finite:
        more = f" and {len(non_finite) - 1} more" if len(non_finite) > 1 else ""
        return [f"{path} holds NaN or infinite numbers ({non_finite[0]}{more}; not strict JSON): the report shows "
                "them as n/a"]
    return []
