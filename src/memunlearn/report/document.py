"""A report as a list of sections of simple blocks, rendered to HTML or markdown.

Sections hold only text, tables and figures, so the HTML page and the markdown file show the
same tables (the markdown leaves the figures out).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..errors import ConfigError
from .data import Results, load_results


@dataclass
class Text:
    """A paragraph; ``kind`` is ``p``, ``lead`` (the headline), ``warn`` or ``note``."""

    text: str
    kind: str = "p"


@dataclass
class Heading:
    """A sub-heading inside a section (one per forget set when a file holds several)."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Facts:
    """Labelled values (the setting at the top of the page)."""

    items: list[tuple[str, str]]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    # rows to emphasise (e.g. the noise floor), by index
    emphasis: set[int] = field(default_factory=set)
    # shown folded under this summary line (long per-seed detail)
    collapsed: str | None = None
    # sentences rather than numbers: cells left-aligned and wrapped
    prose: bool = False


@dataclass
class Figure:
    svg: str
    caption: str


@dataclass
class Code:
    """Preformatted text (a command, a spec); collapsed under ``summary`` when given."""

    text: str
    summary: str | None = None


@dataclass
class Gallery:
    """Rows of small captioned images (``data:`` URIs, or None where there is no image), one row per
    model: the forget examples it still exposes. Markdown shows the captions only."""

    rows: list[tuple[str, list[tuple[str | None, str]]]]
    caption: str = ""


Block = Union[Text, Heading, Bullets, Facts, Table, Figure, Code, Gallery]


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block]


@dataclass
class Report:
    results: Results
    sections: list[Section]
    seconds: float = 0.0


def build_report(results_or_path: Mapping[str, Any] | str | Path | Results, figures: bool = True) -> Report:
    """Read results and run every section function (:data:`memunlearn.report.sections.SECTIONS`).

    Args:
        results_or_path: a results dictionary, a results file, a run directory, or loaded :class:`Results`.
        figures: draw the plots (the markdown report needs only the tables).

    Returns:
        The :class:`Report`: the results and the sections that had data.

    Raises:
        DataError: no results there, or a file of a shape no section reads.
    """
    from .sections import DRAW, SECTIONS

    start = time.perf_counter()
    results = results_or_path if isinstance(results_or_path, Results) else load_results(results_or_path)
    sections, missing = [], []
    token = DRAW.set(figures)
    try:
        for spec in SECTIONS:
            if not spec.available(results):
                if spec.absent and results.blocks:
                    missing.append(spec.absent)
                continue
            if spec.figure and not figures:
                continue
            section = spec.build(results)
            if section is not None:
                section.blocks = [b for b in section.blocks if not (isinstance(b, Figure) and not b.svg)]
            if section is not None and section.blocks:
                sections.append(section)
    finally:
        DRAW.reset(token)
    if missing:
        sections.append(Section("missing", "Not in these results", [
            Text("Sections this report draws when the results carry their data:"), Bullets(missing)]))
    return Report(results, sections, time.perf_counter() - start)


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
