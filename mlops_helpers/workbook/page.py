"""The workbook's HTML pages (a run's report, a batch's index, the proof of concept's
summary), built one way: a self-contained file (no scripts, nothing fetched from elsewhere)
with a title, a style, an intro and sections, where every text is escaped unless it is
:class:`Markup` built here (a link, a table, an embedded image)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 1.5rem auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f0f0f0; }
tr.failed td { background: #fdd; }
img { max-width: 100%; }
"""


class Markup(str):
    """Text that is already HTML, written as it is; anything else is escaped."""


def escape(value: object) -> Markup:
    """``value`` as HTML: markup as it is, any other value as escaped text."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


def link(href: str, text: object) -> Markup:
    """A link to ``href`` (a file beside the page) showing ``text``."""
    return Markup(f'<a href="{html.escape(href)}">{escape(text)}</a>')


def paragraph(text: object) -> Markup:
    """One paragraph."""
    return Markup(f"<p>{escape(text)}</p>")


def facts(items: Mapping[str, object]) -> Markup:
    """A list of ``name: value`` facts, the names in bold."""
    lines = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in items.items())
    return Markup(f"<ul>{lines}</ul>")


def png_image(base64_png: str, alt: str) -> Markup:
    """A PNG embedded in the page itself (base64), so the page needs no other file."""
    return Markup(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64_png}">')


@dataclass(frozen=True)
class Cell:
    """A table cell with a CSS class (e.g. ``caught``)."""

    value: object
    css: str


@dataclass(frozen=True)
class Row:
    """A table row with a CSS class (e.g. its status, ``failed``)."""

    cells: Sequence[object]
    css: str = ""


def _cell(value: object) -> str:
    if isinstance(value, Cell):
        return f'<td class="{html.escape(value.css)}">{escape(value.value)}</td>'
    return f"<td>{escape(value)}</td>"


def table(head: Sequence[str], rows: Iterable[Row | Sequence[object]]) -> Markup:
    """A table: the header ``head``, then one row per item of ``rows``, cells escaped."""
    body = []
    for row in rows:
        row = row if isinstance(row, Row) else Row(row)
        opening = f'<tr class="{html.escape(row.css)}">' if row.css else "<tr>"
        body.append(opening + "".join(_cell(c) for c in row.cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
    return Markup(
        f"<table><thead>{header}</thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"
    )


def section(heading: str, *parts: Markup) -> Markup:
    """A titled section: an ``h2`` heading, then its parts."""
    return Markup("\n".join([f"<h2>{escape(heading)}</h2>", *parts]))


def page(title: str, *body: Markup, style: str = "") -> str:
    """A whole page: ``title`` (as its title and its heading), the style (:data:`STYLE` and
    then ``style``), then ``body``: an intro, tables, sections, in order."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}{style}</style></head><body>\n"
        + "\n".join([f"<h1>{escape(title)}</h1>", *body])
        + "\n</body></html>\n"
    )


def write_page(path: Path, text: str) -> Path:
    """Write a page built by :func:`page` to ``path``; return the path."""
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path
