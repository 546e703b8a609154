"""Typed readers for stored analysis results (what a study keeps of an analysis).

:class:`~snnrobust.analysis.sparsity.SparsityReport` reads its own JSON back
(``SparsityReport.from_dict``). :class:`~snnrobust.analysis.vulnerability.VulnerabilityReport`
holds numpy arrays and derives its summary, so its stored JSON (``snnrobust.vulnerability/1``,
written by ``VulnerabilityReport.to_dict()``) is read back here as a
:class:`VulnerabilityResult`: the summary numbers and the per-sample bound and ratio.

Numbers JSON could not hold (NaN, inf are written as null) and numbers that were not
recorded read as ``None``, never as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import ConfigError

VULNERABILITY_SCHEMA = "snnrobust.vulnerability/1"


def finite_float(x: Any) -> Optional[float]:
    """A finite float, or None (null, NaN, inf, bools and strings are not recorded numbers)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x: Any) -> Optional[int]:
    v = finite_float(x)
    return int(v) if v is not None and v == int(v) else None


@dataclass
class VulnerabilityResult:
    """A stored vulnerability measurement.

    ``eps``: the L-inf budget (pixel units); ``n``: samples; ``rho_rand`` / ``rho_adv``: mean
    |change of f_y| under random sign noise / the best attack within eps (``*_se``: standard
    errors over samples); ``ratio``: rho_adv / rho_rand (None when undefined: f_y never
    changed); ``l0``: mean non-zero entries of the input gradient (``l0_fraction`` of the
    ``n_inputs`` entries); ``bound_model``: sqrt(2 max L0); ``ratio_within_model_bound``:
    ratio <= bound_model; ``frac_bound_holds``: fraction of samples within their own bound.
    ``bounds`` / ``ratios`` / ``l0s``: per-sample sqrt(2 L0), adv/rand ratio and L0 (None where
    not finite)."""

    eps: Optional[float] = None
    n: Optional[int] = None
    rho_rand: Optional[float] = None
    rho_rand_se: Optional[float] = None
    rho_adv: Optional[float] = None
    rho_adv_se: Optional[float] = None
    ratio: Optional[float] = None
    l0: Optional[float] = None
    l0_fraction: Optional[float] = None
    n_inputs: Optional[int] = None
    bound_model: Optional[float] = None
    ratio_within_model_bound: Optional[bool] = None
    frac_bound_holds: Optional[float] = None
    bounds: list = field(default_factory=list)
    ratios: list = field(default_factory=list)
    l0s: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "VulnerabilityResult":
        """Read ``VulnerabilityReport.to_dict()`` output; a ConfigError when it is not one."""
        if not isinstance(d, dict) or d.get("schema") != VULNERABILITY_SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ConfigError(f"not a vulnerability result (schema {got!r}, expected {VULNERABILITY_SCHEMA!r})")
        s, ps = d.get("summary"), d.get("per_sample") or {}
        if not isinstance(s, dict) or not isinstance(ps, dict):
            raise ConfigError("vulnerability result without a summary mapping")
        within = s.get("ratio_within_model_bound")

        def per(key: str) -> list:
            v = ps.get(key)
            return [finite_float(x) for x in v] if isinstance(v, (list, tuple)) else []

        return cls(eps=finite_float(s.get("eps")), n=_int(s.get("n")), rho_rand=finite_float(s.get("rho_rand")),
                   rho_rand_se=finite_float(s.get("rho_rand_se")), rho_adv=finite_float(s.get("rho_adv")),
                   rho_adv_se=finite_float(s.get("rho_adv_se")), ratio=finite_float(s.get("ratio")),
                   l0=finite_float(s.get("l0")),
                   l0_fraction=finite_float(s.get("l0_fraction")), n_inputs=_int(s.get("n_inputs")),
                   bound_model=finite_float(s.get("bound_model")),
                   ratio_within_model_bound=within if isinstance(within, bool) else None,
                   frac_bound_holds=finite_float(s.get("frac_bound_holds")), bounds=per("bound"), ratios=per("ratio"),
                   l0s=per("l0"), settings=dict(d.get("settings") or {}))

    def per_sample_pairs(self) -> tuple[list[float], list[float]]:
        """Per-sample (bound sqrt(2 L0), ratio adv/rand), only where both are finite. Without
        stored bounds the bound is derived from the per-sample L0."""
        bounds = self.bounds or [math.sqrt(2 * v) if v is not None and v >= 0 else None for v in self.l0s]
        pairs = [(b, r) for b, r in zip(bounds, self.ratios) if b is not None and r is not None]
        return [b for b, _ in pairs], [r for _, r in pairs]
