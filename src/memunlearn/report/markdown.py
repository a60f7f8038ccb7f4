"""Render a report's text and tables as markdown (for docs/results.md); figures are left out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .blocks import Bullets, Code, Facts, Figure, Gallery, Heading, Report, Table, Text
from .document import build_report


def render_markdown(report: Report | Mapping[str, Any] | str | Path, level: int = 2) -> str:
    """The report's headline and tables as markdown; ``level`` is the heading level of the title.

    The tables hold the same cells as the HTML page's (both come from the same sections).
    """
    if not isinstance(report, Report):
        report = build_report(report, figures=False)
    hashes = "#" * level
    out = [f"{hashes} {report.results.title}", ""]
    for section in report.sections:
        if section.key != "setting":
            out += [f"{hashes}# {section.title}", ""]
        for block in section.blocks:
            out += _block(block, hashes)
    return "\n".join(out).rstrip() + "\n"


def _block(block: Any, hashes: str) -> list[str]:
    if isinstance(block, Text):
        prefix = {"lead": "**", "warn": "> "}.get(block.kind, "")
        suffix = "**" if block.kind == "lead" else ""
        return [f"{prefix}{_inline(block.text)}{suffix}", ""]
    if isinstance(block, Heading):
        return [f"{hashes}## {block.text}", ""]
    if isinstance(block, Bullets):
        return [f"- {_inline(item)}" for item in block.items] + [""]
    if isinstance(block, Facts):
        return [f"- **{k}**: {_inline(v)}" for k, v in block.items] + [""]
    if isinstance(block, Code):
        if block.summary:  # long configuration: left to the HTML page and the results file
            return []
        return [f"Command: `{block.text}`", ""]
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_cell(h) for h in block.header) + " |",
                 "|" + "|".join("---" for _ in block.header) + "|"]
        for i, row in enumerate(block.rows):
            cells = [_cell(c) for c in row]
            if i in block.emphasis:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(cells) + " |")
        if block.caption:
            lines += ["", _inline(block.caption)]
        return lines + [""]
    if isinstance(block, Figure):
        return []
    if isinstance(block, Gallery):  # the captions, without the images
        lines = [f"- **{_cell(name)}**: " + "; ".join(_inline(caption.replace(chr(10), ", ")) for _, caption in items)
                 for name, items in block.rows]
        return lines + ([""] + [_inline(block.caption)] if block.caption else []) + [""]
    raise TypeError(f"cannot render {type(block).__name__}")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    return text.replace("\n", " ")
