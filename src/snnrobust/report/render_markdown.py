"""Render report sections as a markdown summary with pictures in ``figures/``.

GitHub-flavoured markdown: pipe tables, fenced code, images referenced by relative path
(``figures/<name>.png``, written by :mod:`snnrobust.report.writer`). Status words are bold;
replication warnings are block quotes.
"""

from __future__ import annotations

from .doc import Badge, Bullets, Callout, Code, Figure, Heading, Para, Section, Table


def _inline(content) -> str:
    if isinstance(content, Badge):
        return f"**{content.text}**"
    if isinstance(content, (list, tuple)):
        return "".join(_inline(c) for c in content)
    return "" if content is None else str(content)


def _cell(content) -> str:
    return _inline(content).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def _table(t: Table) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in t.headers) + " |",
             "|" + "|".join("---" for _ in t.headers) + "|"]
    for row in t.rows:
        cells = [_cell(c) for c in row] + [" "] * (len(t.headers) - len(row))
        lines.append("| " + " | ".join(cells[: len(t.headers)]) + " |")
    out = "\n".join(lines)
    if t.caption:
        out += f"\n\n*{t.caption}*"
    return out


def _block(b, figure_paths: dict[str, str]) -> str:
    if isinstance(b, Para):
        return _inline(b.content)
    if isinstance(b, Heading):
        return "#" * min(max(b.level, 3), 6) + " " + b.text
    if isinstance(b, Bullets):
        return "\n".join(f"- {_inline(i)}" for i in b.items)
    if isinstance(b, Callout):
        return "\n".join([f"> **⚠ {b.title}**", ">"] + [f"> - {_inline(i)}" for i in b.lines])
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        path = figure_paths.get(b.name, f"figures/{b.name}.png")
        return f"![{b.alt}]({path})\n\n*{b.caption}*"
    if isinstance(b, Code):
        fence = "```"
        while fence in b.text:
            fence += "`"
        head = f"**{b.summary}**\n\n" if b.summary else ""
        return f"{head}{fence}{b.lang}\n{b.text}\n{fence}"
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_markdown(title: str, meta: list[str], sections: list[Section], figure_paths: dict[str, str],
                    footer: str = "") -> str:
    """The markdown document; ``figure_paths`` maps a figure name to its relative path."""
    parts = [f"# {title}", "\n".join(f"- {m}" for m in meta) if meta else "",
             "Contents: " + " · ".join(f"[{s.title}](#{s.id})" for s in sections)]
    for s in sections:
        parts.append(f'<a id="{s.id}"></a>\n\n## {s.title}')
        parts.extend(_block(b, figure_paths) for b in s.blocks)
    if footer:
        parts.append(f"---\n\n*{footer}*")
    return "\n\n".join(p for p in parts if p) + "\n"
