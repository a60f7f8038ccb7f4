"""Render a report as one self-contained HTML page: inline CSS and SVG, no script, font or URL."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .blocks import Bullets, Code, Facts, Figure, Gallery, Heading, Report, Section, Table, Text
from .document import build_report

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2329; font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 28px 60px; background: #fff; min-height: 100vh; }
h1 { font-size: 1.55rem; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.2rem; margin: 1.8em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid #d8dde3; }
h3 { font-size: 1.02rem; margin: 1.2em 0 0.4em; color: #36414c; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0.4em 0; }
dl.facts dt { font-weight: 600; color: #4a5560; }
dl.facts dd { margin: 0; }
pre { background: #f0f2f4; border: 1px solid #dde1e5; border-radius: 4px; padding: 8px 10px; margin: 0.5em 0;
      white-space: pre-wrap; word-break: break-word; font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo,
      Consolas, monospace; }
details { margin: 0.5em 0; }
summary { cursor: pointer; color: #2b5f8a; }
p.lead { font-size: 1.08rem; font-weight: 600; background: #eef5fb; border-left: 4px solid #0072B2;
         padding: 8px 12px; margin: 0.6em 0; }
p.warn { background: #fff6e5; border-left: 4px solid #D55E00; padding: 6px 12px; margin: 0.5em 0; }
p.note { color: #56606a; font-size: 0.9rem; margin: 0.3em 0; }
nav.toc { font-size: 0.9rem; margin: 1em 0; color: #56606a; }
nav.toc a { color: #2b5f8a; margin-right: 0.9em; white-space: nowrap; }
.scroll { overflow-x: auto; margin: 0.6em 0 1em; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; color: #56606a; font-size: 0.85rem; padding-top: 4px; max-width: 1100px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e3e6ea; text-align: right; white-space: nowrap; }
th { background: #f0f2f4; font-weight: 600; white-space: normal; vertical-align: bottom; min-width: 4.5em; }
th:first-child, td:first-child { text-align: left; }
tr.emphasis td { background: #eceff3; font-weight: 600; }
tbody tr:hover td { background: #f7f9fb; }
figure { margin: 0.8em 0 1.4em; }
figure svg { display: block; }
figcaption { color: #56606a; font-size: 0.85rem; max-width: 1000px; }
footer { margin-top: 3em; color: #7a848e; font-size: 0.8rem; }
table.prose th, table.prose td { text-align: left; white-space: normal; }
table.prose td:first-child { white-space: nowrap; font-weight: 600; }
table.gallery td { vertical-align: top; text-align: center; white-space: normal; font-size: 11.5px; line-height: 1.25;
                   min-width: 7.5em; }
table.gallery td:first-child { text-align: left; font-weight: 600; vertical-align: middle; }
table.gallery img { width: 48px; height: 48px; image-rendering: pixelated; display: block; margin: 0 auto 3px;
                    border: 1px solid #c9ced4; }
"""


def render_html(report: Report | Mapping[str, Any] | str | Path) -> str:
    """The report as a complete HTML document (a :class:`Report`, or anything :func:`build_report` reads)."""
    if not isinstance(report, Report):
        report = build_report(report)
    results = report.results
    sections = {section.key: section for section in report.sections}
    top = [sections[key] for key in ("setting", "headline") if key in sections]
    rest = [section for section in report.sections if section.key not in ("setting", "headline")]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(results.title)} · memunlearn report</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>{_e(results.title)}</h1>",
    ]
    for section in top:
        parts.append(_section(section, heading=section.key != "setting"))
    if rest:
        links = " ".join(f'<a href="#{_e(s.key)}">{_e(s.title)}</a>' for s in rest)
        parts.append(f'<nav class="toc">Sections: {links}</nav>')
    for section in rest:
        parts.append(_section(section))
    from .. import __version__

    parts.append(f"<footer>memunlearn {_e(__version__)} report · built in {report.seconds:.1f} s · "
                 "self-contained: no script, stylesheet, font or network access.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _section(section: Section, heading: bool = True) -> str:
    out = [f'<section id="{_e(section.key)}">']
    if heading:
        out.append(f"<h2>{_e(section.title)}</h2>")
    out += [_block(block) for block in section.blocks]
    out.append("</section>")
    return "\n".join(out)


def _block(block: Any) -> str:
    if isinstance(block, Text):
        return f'<p class="{_e(block.kind)}">{_e(block.text)}</p>'
    if isinstance(block, Heading):
        return f"<h3>{_e(block.text)}</h3>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Facts):
        return '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in block.items) + "</dl>"
    if isinstance(block, Code):
        pre = f"<pre>{_e(block.text)}</pre>"
        return f"<details><summary>{_e(block.summary)}</summary>{pre}</details>" if block.summary else pre
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return f"<figure>{block.svg}<figcaption>{_e(block.caption)}</figcaption></figure>"
    if isinstance(block, Gallery):
        return _gallery(block)
    raise TypeError(f"cannot render {type(block).__name__}")


def _table(table: Table) -> str:
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in table.header)
    body = []
    for i, row in enumerate(table.rows):
        cls = ' class="emphasis"' if i in table.emphasis else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>")
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    kind = ' class="prose"' if table.prose else ""
    text = f'<div class="scroll"><table{kind}>{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    return f"<details><summary>{_e(table.collapsed)}</summary>{text}</details>" if table.collapsed else text


def _gallery(gallery: Gallery) -> str:
    body = []
    for name, items in gallery.rows:
        cells = []
        for uri, caption in items:
            image = f'<img src="{_e(uri)}" alt="">' if uri and uri.startswith("data:image/png;base64,") else ""
            cells.append(f"<td>{image}{'<br>'.join(_e(line) for line in caption.splitlines())}</td>")
        body.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
    caption = f"<caption>{_e(gallery.caption)}</caption>" if gallery.caption else ""
    return f'<div class="scroll"><table class="gallery">{caption}<tbody>{"".join(body)}</tbody></table></div>'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
