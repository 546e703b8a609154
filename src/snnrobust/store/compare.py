"""Readable tables of stored results, and a side-by-side comparison across study folders.

``records_table`` lists one store's results; ``comparison_table`` puts results with the same
(kind, label) from several stores next to each other, one column per store, so the same
model/attack run in two folders (two machines, two versions, two budgets) can be read at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .summary import fmt_pct, fmt_rate, fmt_threat, headline


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned plain-text table with a dashed rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


RECORD_HEADERS = ["study", "label", "kind", "key", "created", "clean", "robust [95% CI]", "suite", "budget",
                  "threat", "n", "notes"]  # fmt: skip


def record_cells(record) -> list[str]:
    """The cells of :data:`RECORD_HEADERS` for one :class:`Record`."""
    h = headline(record.payload)
    if h.other is not None:  # not an evaluation: its notes are a few of its scalar fields
        numbers = ["-"] * 6 + [h.other]
    else:
        note = "" if h.robust_from in (None, "worst_case") else f"robust = {h.robust_from}"
        numbers = [fmt_pct(h.clean), fmt_rate(h.robust, h.robust_ci), h.suite or "-", h.budget or "-",
                   fmt_threat(h), "-" if h.n is None else str(h.n), note]  # fmt: skip
    created = record.created.replace("T", " ")[:19]
    return [record.study or "-", record.label or "-", record.kind, record.key, created, *numbers]


def records_table(records: Sequence) -> str:
    return format_table(RECORD_HEADERS, [record_cells(r) for r in records])


def _short(record) -> str:
    h = headline(record.payload)
    if h.other is not None:
        return h.other
    text = f"clean {fmt_pct(h.clean)} / robust {fmt_rate(h.robust, h.robust_ci)}"
    if h.robust_from and "INCOMPLETE" in h.robust_from:
        text += " INCOMPLETE"
    if h.suite:
        text += f" {h.suite}"
    if h.budget:
        text += f"/{h.budget}"
    return text


def comparison_table(sources: Mapping[str, Sequence]) -> str:
    """One row per (kind, label), one column per source (name -> its records).

    Unlabelled results are matched by config hash. When a source holds several results with
    the same label (e.g. different checkpoints), the newest is shown and the count noted.
    """
    names = list(sources)
    table: dict[tuple[str, str], dict[str, list]] = {}
    for name in names:
        for rec in sources[name]:
            key = (rec.kind, rec.label or f"config {rec.config_hash[:8]}")
            table.setdefault(key, {}).setdefault(name, []).append(rec)
    rows = []
    for (kind, label), per in sorted(table.items()):
        row = [kind, label]
        for name in names:
            recs = per.get(name)
            if not recs:
                row.append("-")
                continue
            newest = max(recs, key=lambda r: (r.created, r.id))
            row.append(_short(newest) + (f" (newest of {len(recs)})" if len(recs) > 1 else ""))
        rows.append(row)
    return format_table(["kind", "label", *names], rows)
