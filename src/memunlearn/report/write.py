"""Writing a report file: build the report of some results and render it as HTML or markdown.

The top of the report package: it uses the builder (:mod:`.document`) and both renderers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .document import build_report

__all__ = ["default_output", "write_report"]


def default_output(source: str | Path, fmt: str) -> Path:
    """``report.html`` (or ``.md``) next to a results.json; ``NAME.html`` next to any other JSON file."""
    path = Path(source)
    if path.is_dir():
        return path / f"report.{fmt}"
    name = "report" if path.name == "results.json" else path.stem
    return path.with_name(f"{name}.{fmt}")


def write_report(results_or_path: Mapping[str, Any] | str | Path, out: str | Path | None = None, fmt: str = "html") -> Path:
    """Write a report of results: one self-contained HTML page (default) or markdown tables.

    Args:
        results_or_path: a results dictionary (what ``run_experiment`` returns), a ``results.json``,
            a run directory holding one, or a benchmark's JSON.
        out: the file to write, or a directory (``report.html`` / ``report.md`` inside it). Default:
            next to the results file (``report.html`` beside ``results.json``, ``NAME.html`` beside
            ``NAME.json``); required when a dictionary is given.
        fmt: ``html`` (plots inline as SVG; no script, stylesheet, font or network access) or ``md``.

    Returns:
        The path written (atomically: a reader never sees half a page).

    Raises:
        ConfigError: an unknown format, or a dictionary without ``out``.
        DataError: no results, or results of a shape no section reads.

    Example:
        >>> write_report("runs/demo/results.json")  # doctest: +SKIP
        PosixPath('runs/demo/report.html')
    """
    from ..io import atomic_path

    if fmt not in ("html", "md"):
        raise ConfigError(f"unknown report format {fmt!r}; known: html, md")
    if out is None:
        if isinstance(results_or_path, Mapping):
            raise ConfigError("write_report needs `out` when given a results dictionary")
        out = default_output(results_or_path, fmt)
    out = Path(out)
    if out.is_dir():
        out = out / f"report.{fmt}"
    report = build_report(results_or_path, figures=(fmt == "html"))
    if fmt == "html":
        from .html import render_html

        text = render_html(report)
    else:
        from .markdown import render_markdown

        text = render_markdown(report)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
