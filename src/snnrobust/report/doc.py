"""A tiny document model shared by the HTML and markdown renderers.

:mod:`snnrobust.report.sections` turns a study into a list of :class:`Section` made of the
blocks below; :mod:`~snnrobust.report.html` and :mod:`~snnrobust.report.markdown` render the
same content, so the two outputs never disagree.

Inline content (``Inline``) is a string, a :class:`Badge`, or a list of both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Badge:
    """A coloured status word: PASS / WARN / SKIP, holds / fails, verdicts."""

    text: str
    tone: str  # "good" | "bad" | "warn" | "neutral"


Inline = Union[str, Badge, list]

#: status word -> tone of its badge (anything else is neutral).
TONES = {
    "PASS": "good", "WARN": "bad", "SKIP": "neutral",
    "holds": "good", "fails": "bad", "inconclusive": "neutral",
    "reproduced": "good", "contradicted": "bad", "only under the weak protocol": "warn",
    "empirically robust": "good", "not robust": "bad", "robustness not established": "warn",
    "weak": "warn", "reliable": "good",
    "INCOMPLETE": "bad",
}


def badge(status: str) -> Badge:
    return Badge(status, TONES.get(status, "neutral"))


@dataclass
class Para:
    content: Inline


@dataclass
class Heading:
    text: str
    level: int = 3


@dataclass
class Callout:
    """A boxed message; ``tone="bad"`` is used for replication options that inflate robustness."""

    title: str
    lines: list[Inline]
    tone: str = "bad"


@dataclass
class Bullets:
    items: list[Inline]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Inline]]
    caption: str = ""
    fold: bool = False  # long reference tables fold away in HTML (<details>)


@dataclass
class Figure:
    """A PNG picture; ``name`` is its file stem in the markdown report's figures/ folder."""

    name: str
    png: bytes
    caption: str
    alt: str


@dataclass
class Code:
    """Preformatted text (e.g. a JSON config), collapsible in HTML under ``summary``."""

    text: str
    summary: str = ""
    lang: str = ""


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> "Section":
        self.blocks.extend(b for b in blocks if b is not None)
        return self
