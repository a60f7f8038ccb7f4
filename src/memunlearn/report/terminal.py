"""The terminal table of a run's results (rich)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

COLUMNS = (
    ("Forget acc", "metrics.acc_forget", True),
    ("Retain acc", "metrics.acc_retain", True),
    ("Test acc", "metrics.acc_test", True),
    ("MIA-eff.", "metrics.mia_efficacy", True),
    ("ToW", "tow", False),
    ("ToW-MIA", "tow_mia", False),
    ("Time / oracle", "time_fraction", False),
    ("Params changed", "params_changed_fraction", True),
)
# how each kind of per-method line is marked in the terminal (see sections.method_lines)
LINE_MARKS = {"inside": "✓", "outside": "·", "unchanged": "!", "reference": " "}


def format_interval(stat: dict[str, Any] | None, percent: bool) -> str:
    """``mean ± half-width`` (percentages with one decimal, else three); ``—`` when undefined.

    Strict results.json stores an undefined value as null, older files as NaN: both read as absent.

    Example:
        >>> format_interval({"mean": 0.8731, "half_width": 0.0312, "n": 3}, percent=False)
        '0.873 ± 0.031'
        >>> format_interval({"mean": 0.5, "half_width": None, "n": 1}, percent=True)
        '50.0'
    """
    if not isinstance(stat, Mapping) or stat.get("n", 1) == 0 or not _finite(stat.get("mean")):
        return "—"
    mean, half = stat["mean"], stat.get("half_width")
    if not percent and mean != 0 and abs(mean) < 0.001:  # tiny costs (1e-7 of the exact estimator's time)
        return f"{mean:.2g}" + (f" ± {half:.2g}" if _finite(half) else "")
    text = f"{mean * 100:.1f}" if percent else f"{mean:.3f}"
    if _finite(half):
        text += f" ± {half * 100:.1f}" if percent else f" ± {half:.3f}"
    return text


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def results_table(results: dict[str, Any]) -> Table:
    """The first forget set's table (see :func:`results_tables`)."""
    return results_tables(results)[0]


def results_tables(results: dict[str, Any]) -> list[Table]:
    """One table per forget set: the oracle, the original model, the noise floor and each method,
    mean ± 95% interval over seeds; the caption carries the headline's verdict."""
    from .data import load_results
    from .sections import headline_blocks

    loaded = load_results(results)
    tables = []
    for block in loaded.blocks:
        seeds = len(block.seeds)
        title = f"{loaded.title}" + (f" · {block.title}" if len(loaded.blocks) > 1 else "")
        title += f" · {seeds} seed{'s' if seeds != 1 else ''} (accuracies in %; ToW 1 = oracle)"
        # the verdict, and every warning that qualifies it (few seeds, failed methods, nothing memorized)
        caption = [text.text for text in headline_blocks(block) if text.kind in ("lead", "warn")]
        train = block.extras.get("original_train_accuracy")
        if train:
            low, high = train
            span = f"{100 * low:.1f}%" if low == high else f"{100 * low:.1f}–{100 * high:.1f}%"
            caption.append(f"original model's training accuracy: {span}")
        table = Table(title=title, caption="\n".join(caption))
        table.add_column("Method")
        for label, _, _ in COLUMNS:
            table.add_column(label, justify="right")
        if block.oracle is not None:
            table.add_row(block.oracle.name, *[format_interval(block.oracle.stats.get(key.removeprefix("metrics.")), pct)
                                               for _, key, pct in COLUMNS[:-2]], "1.000", "—")
        rows = ([block.original] if block.original else [])
        if block.retrain is not None and block.retrain not in block.methods:
            rows.append(block.retrain)
        for row in rows + block.methods:
            table.add_row(row.label, *[format_interval(row.stats.get(key.removeprefix("metrics.")), pct)
                                       for _, key, pct in COLUMNS])
        tables.append(table)
    return tables


def output_console(file=None) -> Console:
    """A console that keeps full tables when output goes to a file or pipe (rich assumes 80 columns)."""
    import sys

    file = file or sys.stdout
    return Console(file=file, width=None if file.isatty() else 160)


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    """Print every forget set's table of a results dictionary (either results.json format)."""
    from .data import load_results
    from .sections import method_lines

    console = console or output_console()
    loaded = load_results(results)
    for table, block in zip(results_tables(loaded.raw if loaded.raw else results), loaded.blocks):
        console.print(table)
        lines = method_lines(block)
        if lines:
            said = Table(title="What each method did (✓ inside the noise floor, ! left the model unchanged)",
                         box=None, show_header=True, header_style="bold", pad_edge=False)
            for header in ("", "Method", "Against the noise floor (ToW, ToW-MIA)", "Δ forget / retain / test acc vs oracle (pp)",
                           "Cost vs oracle"):
                said.add_column(header)
            for line in lines:
                said.add_row(LINE_MARKS.get(line.kind, " "), line.name, *line.compact)
            console.print(said)
