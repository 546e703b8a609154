"""Headline numbers of a stored payload, read defensively.

Evaluation payloads follow the ``snnrobust.evaluation/1`` JSON schema (clean accuracy, per-attack
and worst-case robust accuracy as rates ``{k, n, value, ci: [lo, hi]}``, the threat model, suite
and budget). Anything may be missing — an older payload, another kind, a partial result — so
every field here is ``None`` when it cannot be read, never an exception. Accuracies are
fractions in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..evaluation.results import incomplete_from_dict
from ..evaluation.threat import format_eps


@dataclass(frozen=True)
class Headline:
    """What a reader wants first from one result (accuracies as fractions in [0, 1])."""

    clean: float | None = None
    clean_ci: tuple[float, float] | None = None
    robust: float | None = None
    robust_ci: tuple[float, float] | None = None
    robust_from: str | None = None  # "worst_case" or "min over N attacks", + " INCOMPLETE (...)" if an attack crashed
    suite: str | None = None
    budget: str | None = None
    norm: str | None = None
    eps: float | None = None
    perturb: str | None = None
    bn_mode: str | None = None
    n: int | None = None
    other: str | None = None  # a few scalar fields of a non-evaluation payload

    def to_dict(self) -> dict:
        return asdict(self)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else None


def _str(x: Any) -> str | None:
    return x if isinstance(x, str) and x else None


def read_rate(d: Any) -> tuple[float | None, tuple[float, float] | None, int | None]:
    """(value, (ci_low, ci_high) or None, n) from a rate dict, or a bare number."""
    if _num(d) is not None:
        return _num(d), None, None
    if not isinstance(d, dict):
        return None, None, None
    value = _num(d.get("value"))
    k, n = _int(d.get("k")), _int(d.get("n"))
    if value is None and k is not None and n:
        value = k / n
    ci = d.get("ci")
    lo = hi = None
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        lo, hi = _num(ci[0]), _num(ci[1])
    if lo is None or hi is None:
        lo, hi = _num(d.get("ci_low")), _num(d.get("ci_high"))
    return value, ((lo, hi) if lo is not None and hi is not None else None), n


def is_evaluation(payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    schema = payload.get("schema")
    if isinstance(schema, str) and schema.startswith("snnrobust.evaluation"):
        return True
    return "clean" in payload and ("attacks" in payload or "worst_case" in payload)


def _scalars(payload: dict, limit: int = 4) -> str | None:
    """A few ``key=value`` scalars of a non-evaluation payload (also one level into "metrics")."""
    items: list[str] = []

    def add(prefix: str, d: dict) -> None:
        for k in sorted(d):
            if len(items) >= limit:
                return
            v = d[k]
            if k == "schema" or isinstance(v, (dict, list)) or v is None:
                continue
            if isinstance(v, float):
                v = f"{v:.4g}"
            elif isinstance(v, str) and len(v) > 24:
                v = v[:21] + "..."
            items.append(f"{prefix}{k}={v}")

    add("", payload)
    if isinstance(payload.get("metrics"), dict):
        add("", payload["metrics"])
    return " ".join(items) or None


def headline(payload: Any) -> Headline:
    """The :class:`Headline` of any payload; evaluation fields stay None for other kinds."""
    if not isinstance(payload, dict):
        return Headline()
    if not is_evaluation(payload):
        return Headline(other=_scalars(payload))
    clean, clean_ci, n_clean = read_rate(payload.get("clean"))

    robust = robust_ci = robust_from = None
    wc = payload.get("worst_case")
    if isinstance(wc, dict):
        robust, robust_ci, _ = read_rate(wc.get("robust_accuracy"))
        if robust is not None:
            robust_from = "worst_case"
    if robust is None and isinstance(payload.get("attacks"), list):
        rates = [read_rate(a.get("robust_accuracy")) for a in payload["attacks"] if isinstance(a, dict)]
        rates = [r for r in rates if r[0] is not None]
        if rates:
            robust, robust_ci, _ = min(rates, key=lambda r: r[0])
            robust_from = f"min over {len(rates)} attacks"

    if robust_from is not None and incomplete_from_dict(payload):  # an attack crashed: say so in every listing
        robust_from += " INCOMPLETE (an attack crashed; upper bound)"

    tm = payload.get("threat_model") if isinstance(payload.get("threat_model"), dict) else {}
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    n = _int(data.get("n"))
    return Headline(
        clean=clean,
        clean_ci=clean_ci,
        robust=robust,
        robust_ci=robust_ci,
        robust_from=robust_from,
        suite=_str(payload.get("suite")),
        budget=_str(payload.get("budget")),
        norm=_str(tm.get("norm")),
        eps=_num(tm.get("eps")),
        perturb=_str(tm.get("perturb")),
        bn_mode=_str(tm.get("bn_mode")),
        n=n if n is not None else n_clean,
    )


# ---------------------------------------------------------------------- text forms
def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def fmt_rate(x: float | None, ci: tuple[float, float] | None) -> str:
    """``12.3% [10.1, 14.8]`` (95 % interval in percent) or ``-``."""
    if x is None:
        return "-"
    if ci is None:
        return fmt_pct(x)
    return f"{fmt_pct(x)} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def fmt_eps(eps: float | None) -> str:
    """``8/255`` when eps is a whole number of 8-bit grey levels, else ``0.3``; ``-`` when unknown."""
    return format_eps(eps, decimal=False, missing="-")


def fmt_threat(h: Headline) -> str:
    """``linf 8/255``, flagged ``(spikes)`` / ``(BN-train)`` for the seed-000 replication modes."""
    if h.norm is None and h.eps is None:
        return "-"
    text = f"{h.norm or '?'} {fmt_eps(h.eps)}"
    if h.perturb and h.perturb != "pixels":
        text += f" ({h.perturb})"
    if h.bn_mode and h.bn_mode != "eval":
        text += f" (BN-{h.bn_mode})"
    return text
