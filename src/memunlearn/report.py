"""Human-readable reports of results dictionaries (terminal tables via rich)."""

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
    if not stat or stat.get("n", 0) == 0 or math.isnan(stat["mean"]):
        return "—"
    scale, unit = (100, "") if percent else (1, "")
    text = f"{stat['mean'] * scale:.1f}" if percent else f"{stat['mean']:.3f}"
    if not math.isnan(stat.get("half_width", float("nan"))):
        text += f" ± {stat['half_width'] * scale:.1f}" if percent else f" ± {stat['half_width']:.3f}"
    return text + unit


def results_table(results: dict[str, Any]) -> Table:
    """One row per method (plus the original model and the oracle), mean ± 95% interval over seeds."""
    summary = results["summary"]
    seeds = len(results["seeds"])
    title = (
        f"{results['dataset']['name']} · {results['setting']['model']} · forget {results['forget_set']['rule']} · "
        f"{seeds} seed{'s' if seeds > 1 else ''} (accuracies in %; ToW 1 = oracle)"
    )
    train_acc = [r["original"]["train_accuracy"] for r in results["per_seed"]]
    caption = f"original model's training accuracy: {100 * min(train_acc):.1f}%"
    if len(train_acc) > 1:
        caption = f"original model's training accuracy: {100 * min(train_acc):.1f}–{100 * max(train_acc):.1f}%"
    if min(train_acc) < 0.98:
        caption += " (below ~100%: little is memorized, so plain finetuning can look deceptively good)"
    table = Table(title=title, caption=caption)
    table.add_column("Method")
    for label, _, _ in COLUMNS:
        table.add_column(label, justify="right")
    oracle = {f"metrics.{k}": v for k, v in summary["oracle"].items()}
    table.add_row("oracle (retrain)", *[format_interval(oracle.get(key), pct) if key.startswith("metrics.") else "—"
                                        for _, key, pct in COLUMNS[:-1]], "1.000")
    table.add_row("original", *[format_interval(summary["original"].get(key), pct) for _, key, pct in COLUMNS])
    for method, stats in summary["methods"].items():
        name = method if stats["seeds_ok"] == stats["seeds"] else f"{method} (diverged {stats['seeds'] - stats['seeds_ok']}/{stats['seeds']})"
        table.add_row(name, *[format_interval(stats.get(key), pct) for _, key, pct in COLUMNS])
    return table


def output_console(file=None) -> Console:
    """A console that keeps full tables when output goes to a file or pipe (rich assumes 80 columns)."""
    import sys

    file = file or sys.stdout
    return Console(file=file, width=None if file.isatty() else 160)


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    (console or output_console()).print(results_table(results))
