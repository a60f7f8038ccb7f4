"""The terminal table of a run's results (rich)."""

from __future__ import annotations

import math
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
)


def format_interval(stat: dict[str, Any] | None, percent: bool) -> str:
    """``mean ± half-width`` (percentages with one decimal, else three); ``—`` when undefined.

    Strict results.json stores an undefined value as null, older files as NaN: both read as absent.

    Example:
        >>> format_interval({"mean": 0.8731, "half_width": 0.0312, "n": 3}, percent=False)
        '0.873 ± 0.031'
        >>> format_interval({"mean": 0.5, "half_width": None, "n": 1}, percent=True)
        '50.0'
    """
    if not stat or stat.get("n", 0) == 0 or not _finite(stat.get("mean")):
        return "—"
    scale, unit = (100, "") if percent else (1, "")
    text = f"{stat['mean'] * scale:.1f}" if percent else f"{stat['mean']:.3f}"
    if _finite(stat.get("half_width")):
        text += f" ± {stat['half_width'] * scale:.1f}" if percent else f" ± {stat['half_width']:.3f}"
    return text + unit


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
                                               for _, key, pct in COLUMNS[:-1]], "1.000")
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
    console = console or output_console()
    for table in results_tables(results):
        console.print(table)
