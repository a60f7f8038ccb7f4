"""Reports of results: terminal tables, one self-contained HTML page, markdown tables.

- :func:`print_results` prints a run's table in the terminal (rich); it imports nothing heavy.
- :func:`write_report` turns a results dictionary, a ``results.json`` or a run directory into
  ``report.html`` (plots inline as SVG, no external file, script, font or network) or markdown.

The HTML and markdown reports are built from :data:`memunlearn.report.sections.SECTIONS`, a list
of functions that each return a :class:`~memunlearn.report.document.Section` or ``None`` when the
results hold no data for it, so a new kind of result plugs in as one more function.
"""

from __future__ import annotations

from typing import Any

from .terminal import format_interval, output_console, print_results, results_table, results_tables

__all__ = [
    "format_interval", "output_console", "print_results", "results_table", "results_tables",
    "write_report", "build_report", "load_results", "render_html", "render_markdown",
]

# Building a page imports matplotlib; keep ``import memunlearn.report`` (the terminal table) light.
_LAZY = {
    "write_report": "write", "build_report": "document", "render_html": "html",
    "render_markdown": "markdown", "load_results": "data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
