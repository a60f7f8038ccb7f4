"""The blocks a report is made of: sections of text, tables and figures, and the report that holds them.

They sit below the section functions (:mod:`.sections`), the renderers (:mod:`.html`,
:mod:`.markdown`) and the builder (:mod:`.document`), which all use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .data import Results

__all__ = ["Block", "Bullets", "Code", "Facts", "Figure", "Gallery", "Heading", "Report", "Section", "Table", "Text"]


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
