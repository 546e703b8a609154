"""Render report sections as one self-contained HTML page.

Inline CSS, pictures embedded as ``data:image/png;base64`` URIs, no scripts and no external
resources: the file can be mailed, archived or opened offline. Every piece of text is escaped.
Status words are colour-coded badges; long reference tables fold into ``<details>``.
"""

from __future__ import annotations

import base64
from html import escape

from .doc import Badge, Bullets, Callout, Code, Figure, Heading, Para, Section, Table

#: Tables marked ``fold`` that are longer than this fold into a <details> element, to keep the
#: page scannable (the caption says what is inside).
FOLD_ROWS = 20

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa;
line-height:1.45}
header{background:#1f2937;color:#fff;padding:1.2em 2em}
header h1{margin:0 0 .3em 0;font-size:1.6em}
header p{margin:.2em 0;color:#d1d5db}
nav ul{list-style:none;padding:0;margin:.6em 0 0 0;display:flex;flex-wrap:wrap;gap:.4em 1.2em}
nav a{color:#93c5fd;text-decoration:none}
main{max-width:1200px;margin:0 auto;padding:1em 2em 3em 2em}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:.6em 1.4em 1.2em 1.4em;margin:1.2em 0}
h2{border-bottom:2px solid #e5e7eb;padding-bottom:.2em}
h3{margin-top:1.4em;font-size:1.05em}
.tablewrap{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:.86em}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.95em;padding-top:.3em}
th,td{border:1px solid #e5e7eb;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f3f4f6}
tr:nth-child(even) td{background:#fcfcfd}
.badge{display:inline-block;padding:0 .45em;border-radius:4px;font-weight:600;font-size:.9em;white-space:nowrap}
.badge.good{background:#dcfce7;color:#166534;border:1px solid #86efac}
.badge.bad{background:#fee2e2;color:#991b1b;border:1px solid #fca5a5}
.badge.warn{background:#fef3c7;color:#92400e;border:1px solid #fcd34d}
.badge.neutral{background:#f3f4f6;color:#374151;border:1px solid #d1d5db}
.callout{border-left:6px solid #dc2626;background:#fef2f2;padding:.6em 1em;margin:.8em 0;border-radius:4px}
.callout.warn{border-color:#d97706;background:#fffbeb}
.callout.neutral,.callout.good{border-color:#6b7280;background:#f9fafb}
.callout strong{color:#991b1b}
figure{margin:1em 0}
figure img{max-width:100%;height:auto;border:1px solid #e5e7eb}
figcaption{color:#555;font-size:.9em}
pre{background:#f3f4f6;padding:.6em;overflow-x:auto;font-size:.82em}
details{margin:.5em 0}
summary{cursor:pointer;color:#1d4ed8}
footer{color:#6b7280;font-size:.85em;text-align:center;padding:1em}
"""


def _inline(content) -> str:
    if isinstance(content, Badge):
        return f'<span class="badge {escape(content.tone)}">{escape(content.text)}</span>'
    if isinstance(content, (list, tuple)):
        return "".join(_inline(c) for c in content)
    return escape("" if content is None else str(content))


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    cap = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    html = f'<div class="tablewrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    if t.fold and len(t.rows) > FOLD_ROWS:
        label = t.caption or "table"
        html = f"<details><summary>{escape(label)} ({len(t.rows)} rows)</summary>{html}</details>"
    return html


def _block(b) -> str:
    if isinstance(b, Para):
        return f"<p>{_inline(b.content)}</p>"
    if isinstance(b, Heading):
        level = min(max(b.level, 3), 6)
        return f"<h{level}>{escape(b.text)}</h{level}>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Callout):
        items = "".join(f"<li>{_inline(i)}</li>" for i in b.lines)
        return (f'<div class="callout {escape(b.tone)}" role="alert"><strong>⚠ {escape(b.title)}</strong>'
                f"<ul>{items}</ul></div>")
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(b.alt)}">'
                f"<figcaption>{escape(b.caption)}</figcaption></figure>")
    if isinstance(b, Code):
        pre = f"<pre><code>{escape(b.text)}</code></pre>"
        return f"<details><summary>{escape(b.summary)}</summary>{pre}</details>" if b.summary else pre
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_html(title: str, meta: list[str], sections: list[Section], footer: str = "") -> str:
    """The whole page as a string."""
    nav = "".join(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a></li>' for s in sections)
    meta_html = "".join(f"<p>{escape(m)}</p>" for m in meta)
    body = "".join(
        f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>' + "".join(_block(b) for b in s.blocks) + "</section>"
        for s in sections)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><header><h1>{escape(title)}</h1>{meta_html}<nav><ul>{nav}</ul></nav></header>\n"
            f"<main>{body}</main>\n"
            f"<footer>{escape(footer)}</footer></body></html>\n")
