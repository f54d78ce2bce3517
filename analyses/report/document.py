"""One document model: blocks that render themselves to HTML and to Markdown.

A document is a list of blocks (:class:`Heading`, :class:`Para`, :class:`Table`, :class:`Figure`,
:class:`Details`, ...); every block has ``html()`` and ``markdown()``, so there is one place per
block type that says how it looks in each format. :class:`Document` renders a list of blocks;
an analysis can build its own ``report.md`` with it::

    from analyses.report.document import Document, Heading, Para, kv_table
    Document([Heading(1, "Kinship care"), Para("...")]).write_markdown(out / "report.md")
"""

from __future__ import annotations

import base64
import html
import json
import math
import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def esc(text: Any) -> str:
    return html.escape(str(text))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "–"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v)) if abs(v) >= 1000 or v == 0 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if 0 < abs(v) < 0.001:
            return f"{v:.1e}"
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        text = ", ".join(fmt(x) for x in v[:12]) + (", ..." if len(v) > 12 else "")
        return f"[{text}]"
    if isinstance(v, dict):
        return json.dumps(v, default=str)[:300]
    return str(v)


class Block:
    """A piece of the document; subclasses render themselves."""

    def html(self) -> str:
        raise NotImplementedError

    def markdown(self) -> str:
        raise NotImplementedError


@dataclass
class Heading(Block):
    level: int
    text: str
    anchor: str = ""

    def html(self) -> str:
        anchor = f' id="{self.anchor}"' if self.anchor else ""
        return f"<h{self.level}{anchor}>{esc(self.text)}</h{self.level}>"

    def markdown(self) -> str:
        return "#" * self.level + " " + self.text


@dataclass
class Para(Block):
    text: str
    lead: str = ""

    def html(self) -> str:
        lead = f"<strong>{esc(self.lead)}</strong> " if self.lead else ""
        return f"<p>{lead}{esc(self.text)}</p>"

    def markdown(self) -> str:
        return (f"**{self.lead}** " if self.lead else "") + self.text


@dataclass
class Bullets(Block):
    items: list[str]

    def html(self) -> str:
        return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in self.items) + "</ul>"

    def markdown(self) -> str:
        return "\n".join(f"- {i}" for i in self.items)


@dataclass
class Callout(Block):
    kind: str      # danger | warn | info | ok
    title: str
    items: list[str] = field(default_factory=list)
    anchor: str = ""

    def html(self) -> str:
        anchor = f' id="{self.anchor}"' if self.anchor else ""
        items = "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in self.items) + "</ul>" if self.items else ""
        return f'<div class="callout {self.kind}"{anchor}><strong>{esc(self.title)}</strong>{items}</div>'

    def markdown(self) -> str:
        return "\n".join([f"> **{self.title}**", *([">"] if self.items else []), *(f"> - {i}" for i in self.items)])


@dataclass
class Badge(Block):
    kind: str      # synthetic | real | unknown
    text: str

    def html(self) -> str:
        return f'<p><span class="badge {self.kind}">{esc(self.text)}</span></p>'

    def markdown(self) -> str:
        return f"**[{self.text}]**"


def _cell_html(v: Any) -> tuple[str, bool]:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "".join(f'<div class="line">{esc(x)}</div>' for x in v), False
    numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
    return esc(fmt(v)), numeric


def _md_cell(v: Any) -> str:
    text = "<br>".join(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else fmt(v)
    return text.replace("|", "\\|").replace("\n", "<br>")


@dataclass
class Table(Block):
    frame: pd.DataFrame
    caption: str = ""
    anchor: str = ""
    bad: set[tuple[int, str]] = field(default_factory=set)
    note: str = ""

    def html(self) -> str:
        anchor = f' id="{self.anchor}"' if self.anchor else ""
        parts = [f'<div class="tablewrap"><table{anchor}>']
        if self.caption:
            parts.append(f"<caption>{esc(self.caption)}</caption>")
        parts.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in self.frame.columns) + "</tr></thead><tbody>")
        for i, row in enumerate(self.frame.itertuples(index=False)):
            cells = []
            for col, v in zip(self.frame.columns, row, strict=True):
                text, numeric = _cell_html(v)
                long = not numeric and len(text) > 80
                cls = " ".join(c for c in ("num" if numeric else "", "long" if long else "",
                                           "bad" if (i, col) in self.bad else "") if c)
                cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>")
        if self.note:
            parts.append(f'<p class="meta">{esc(self.note)}</p>')
        return "".join(parts)

    def markdown(self) -> str:
        cols = [str(c).replace("|", "\\|") for c in self.frame.columns]
        lines = [f"*{self.caption}*", ""] if self.caption else []
        lines += ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for i, row in enumerate(self.frame.itertuples(index=False)):
            cells = [_md_cell(v) for v in row]
            cells = [f"**{c}** (!)" if (i, col) in self.bad else c for c, col in zip(cells, self.frame.columns, strict=True)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


@dataclass
class Figure(Block):
    source: Path
    rel: str       # path inside the report folder (the Markdown link)
    caption: str = ""

    def html(self) -> str:
        data = base64.b64encode(self.source.read_bytes()).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(self.caption)}">'
                f"<figcaption>{esc(self.caption)}</figcaption></figure>")

    def markdown(self) -> str:
        return f"![{self.caption}]({self.rel})"


@dataclass
class Pre(Block):
    text: str

    def html(self) -> str:
        return f"<pre>{esc(self.text)}</pre>"

    def markdown(self) -> str:
        return "```text\n" + self.text + "\n```"


def _demote(text: str, by: int = 3) -> str:
    return "\n".join(("#" * by + line) if re.match(r"#{1,6} ", line) else line for line in text.splitlines())


def markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt   # a dependency of rich (PyMC's progress bars)

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


@dataclass
class Page(Block):
    """Markdown written by an analysis itself (headings demoted)."""

    text: str

    def html(self) -> str:
        return f'<div class="page">{markdown_to_html(_demote(self.text))}</div>'

    def markdown(self) -> str:
        return _demote(self.text)


@dataclass
class Notes(Block):
    """A docstring (reStructuredText): rendered to HTML with MathML formulas, and to Markdown."""

    text: str

    def html(self) -> str:
        from analyses.report.notes import notes_html

        return f'<div class="notes">{notes_html(self.text)}</div>'

    def markdown(self) -> str:
        from analyses.report.notes import notes_markdown

        return notes_markdown(self.text)


@dataclass
class Links(Block):
    """In-page links (a table of contents); plain text in Markdown."""

    items: list[tuple[str, str]]   # (text, anchor)

    def html(self) -> str:
        return "<ul>" + "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for t, a in self.items) + "</ul>"

    def markdown(self) -> str:
        return "\n".join(f"- {t}" for t, _ in self.items)


@dataclass
class Details(Block):
    summary: str
    blocks: list[Block]
    open: bool = False

    def html(self) -> str:
        return (f"<details{' open' if self.open else ''}><summary>{esc(self.summary)}</summary>"
                + to_html(self.blocks) + "</details>")

    def markdown(self) -> str:
        return f"**{self.summary}**\n\n" + to_markdown(self.blocks).rstrip("\n")


def to_html(blocks: list[Block]) -> str:
    return "\n".join(b.html() for b in blocks)


def to_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(b.markdown() for b in blocks) + "\n"


@dataclass
class Document:
    blocks: list[Block]

    def html(self) -> str:
        return to_html(self.blocks)

    def markdown(self) -> str:
        return to_markdown(self.blocks)

    def write_markdown(self, path: Path) -> Path:
        Path(path).write_text(self.markdown(), encoding="utf-8")
        return Path(path)


def kv_table(d: dict, caption: str = "") -> Table:
    rows = [{"item": str(k), "value": fmt(v)} for k, v in d.items()]
    return Table(pd.DataFrame(rows, columns=["item", "value"]), caption)


def frame_table(frame: pd.DataFrame, caption: str, max_rows: int, source: str = "", *,
                fold_above: int | None = 15) -> Table | Details:
    """A saved table, truncated to ``max_rows``; folded away (HTML) when longer than ``fold_above``."""
    note = ""
    n = len(frame)
    if n > max_rows:
        note = f"First {max_rows} of {n} rows" + (f"; full table: {source}" if source else "") + "."
        frame = frame.head(max_rows)
    table = Table(frame.reset_index(drop=True), caption, note=note)
    if fold_above is not None and n > fold_above:
        return Details(f"{caption} ({n} rows)", [table])
    return table
