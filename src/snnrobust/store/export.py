"""CSV export of stored results, written atomically.

One row per result: its key and metadata, the headline numbers of evaluation payloads as
plain columns (accuracies as fractions in [0, 1], eps in pixel units), and the full config
and payload as JSON so nothing is lost. The file is written to a temporary file in the same
folder and renamed over the target, so a reader never sees half a CSV.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import SnnRobustError
from ..io import atomic_open
from .summary import headline

CSV_COLUMNS = [
    "source", "study", "label", "kind", "checkpoint_hash", "config_hash", "created", "duration_s",
    "clean_acc", "clean_ci_low", "clean_ci_high",
    "robust_acc", "robust_ci_low", "robust_ci_high", "robust_from",
    "suite", "budget", "norm", "eps", "perturb", "bn_mode", "n",
    "config_json", "payload_json",
]  # fmt: skip


def record_row(record, source: str = "") -> dict:
    """One CSV row (column -> value; None becomes an empty cell) for a :class:`Record`."""
    h = headline(record.payload)
    return {
        "source": source,
        "study": record.study,
        "label": record.label,
        "kind": record.kind,
        "checkpoint_hash": record.checkpoint_hash,
        "config_hash": record.config_hash,
        "created": record.created,
        "duration_s": record.duration_s,
        "clean_acc": h.clean,
        "clean_ci_low": h.clean_ci[0] if h.clean_ci else None,
        "clean_ci_high": h.clean_ci[1] if h.clean_ci else None,
        "robust_acc": h.robust,
        "robust_ci_low": h.robust_ci[0] if h.robust_ci else None,
        "robust_ci_high": h.robust_ci[1] if h.robust_ci else None,
        "robust_from": h.robust_from,
        "suite": h.suite,
        "budget": h.budget,
        "norm": h.norm,
        "eps": h.eps,
        "perturb": h.perturb,
        "bn_mode": h.bn_mode,
        "n": h.n,
        "config_json": json.dumps(record.config, sort_keys=True, separators=(",", ":")),
        "payload_json": json.dumps(record.payload, sort_keys=True, separators=(",", ":")),
    }


def write_csv(path: str | os.PathLike, records: Iterable, source: str = "",
              sources: Iterable[str] | None = None) -> Path:
    """Write ``records`` to ``path`` as CSV (atomically, :func:`snnrobust.io.atomic_open`). Returns the path.

    ``sources`` gives a per-record source (e.g. its database); otherwise ``source`` is used for all.
    """
    out = Path(path)
    if out.is_dir():
        raise SnnRobustError(f"{out}: is a folder; give a file name for the CSV, e.g. {out / 'results.csv'}")
    records = list(records)
    srcs = list(sources) if sources is not None else [source] * len(records)
    if len(srcs) != len(records):
        raise ValueError("sources must give one entry per record")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            for rec, src in zip(records, srcs):
                w.writerow({k: ("" if v is None else v) for k, v in record_row(rec, src).items()})
    except OSError as e:
        raise SnnRobustError(f"cannot write {out}: {e.strerror or e}; choose a writable location") from None
    return out
