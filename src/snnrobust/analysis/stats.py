"""Small numeric helpers shared by the analysis reports."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error (sample std with ddof=1 over sqrt(n)) of the finite values.

    (nan, nan) when there is no finite value; SE is 0.0 for a single value (no spread
    can be estimated from one sample, and 0 keeps error bars drawable)."""
    a = np.asarray(list(values), dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    if a.size == 1:
        return float(a[0]), 0.0
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))


def json_float(x) -> float | None:
    """A float for JSON: NaN and +-inf become None (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def from_json_float(x) -> float:
    return math.nan if x is None else float(x)


def fmt(x: float | None, spec: str = ".3f") -> str:
    """Format a number for a table; NaN/None as '-'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, spec)
