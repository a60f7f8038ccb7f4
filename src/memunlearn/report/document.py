"""A report as a list of sections of simple blocks, rendered to HTML or markdown.

Sections hold only text, tables and figures, so the HTML page and the markdown file show the
same tables (the markdown leaves the figures out).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .blocks import Block, Bullets, Code, Facts, Figure, Gallery, Heading, Report, Section, Table, Text  # noqa: F401  (their home)
from .data import Results, load_results


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
