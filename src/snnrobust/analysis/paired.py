"""Paired statistics for comparing two study variants on the same test images.

A study trains each variant R times (replicates, training seeds s + r) and evaluates every
replicate on the same test images, so two variants a and b can be compared *paired*:

Across seeds (replicate r of a against replicate r of b)::

    d_r  = acc_a,r - acc_b,r                      r = 1..R
    d̄    = (1/R) Σ d_r,   s_d = sqrt(Σ (d_r - d̄)² / (R - 1)),   SE = s_d / sqrt(R)
    95 % CI = d̄ ± t_{0.975, R-1} · SE             (Student's t, R - 1 degrees of freedom)

It covers the seed-to-seed variation of training *and* the test-sample noise that differs
between seeds; with R = 1 there is no spread to estimate and no across-seed interval.

Per sample (McNemar), pooled over seeds: every (seed r, image i) is one pair of outcomes
(a correct?, b correct?). With b10 = #(a right, b wrong), b01 = #(a wrong, b right) among N
pairs::

    exact two-sided p = min(1, 2 · P(X <= min(b10, b01))),   X ~ Binomial(b10 + b01, 1/2)
    difference in proportions  d = (b10 - b01) / N
    95 % CI (Agresti & Min 2005: add 1/2 to each of the four cells, Ñ = N + 2)
        d̃ = (b̃10 - b̃01) / Ñ,   SE = sqrt((b̃10 + b̃01) - (b̃10 - b̃01)² / Ñ) / Ñ,   d̃ ± 1.96 · SE

Pooling treats the (seed, image) pairs as independent: it answers "do these trained models
differ on these images", not "would other seeds differ" (the across-seed interval does).

Sample sizes to decide a difference of the observed size at two-sided level alpha = 0.05 with
power 1 - beta = 0.80:

- replicates (:func:`replicates_needed`): the smallest R >= 2 with
  (t_{1-alpha/2, R-1} + t_{1-beta, R-1}) · s_d / sqrt(R) <= |d̄|, from the observed s_d and d̄;
- test samples, McNemar (:func:`samples_needed`, Connor 1987), with the observed discordance
  rate p_disc = (b10 + b01) / N and difference d::

      N = (z_{1-alpha/2} · sqrt(p_disc) + z_{1-beta} · sqrt(p_disc - d²))² / d²

All functions are pure; accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Optional, Sequence

#: the cap of :func:`replicates_needed` (beyond it the answer is "more than this")
MAX_REPLICATES = 1000


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with integer ``df`` >= 1 degrees of freedom, by the finite sums of
    Abramowitz & Stegun 26.7.3-4 with θ = atan(t / sqrt(df)): A(t) = P(|T| < |t|) is
    (2/π)(θ + sinθ cosθ (1 + 2/3 cos²θ + ... )) for odd df and sinθ (1 + 1/2 cos²θ + ...) for even df."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    df = int(df)
    theta = math.atan(t / math.sqrt(df))
    c2, s, c = math.cos(theta) ** 2, math.sin(theta), math.cos(theta)
    term = total = 1.0
    if df % 2:
        for k in range(1, (df - 3) // 2 + 1):
            term *= 2 * k / (2 * k + 1) * c2
            total += term
        a = 2 / math.pi * (theta + (s * c * total if df > 1 else 0.0))
    else:
        for k in range(1, (df - 2) // 2 + 1):
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        a = s * total
    return 0.5 + 0.5 * a


def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`,
    to 1e-10), e.g. t_quantile(0.975, 2) = 4.3027."""
    if not 0 < q < 1:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class SeedDifference:
    """Per-seed paired differences d_r = a_r - b_r and their across-seed interval (formulas in
    the module docstring); ``lo``/``hi`` are None with a single seed."""

    diffs: tuple[float, ...]
    mean: float
    sd: Optional[float]         # s_d (ddof 1); None for one seed
    lo: Optional[float]
    hi: Optional[float]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None


def seed_differences(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> SeedDifference:
    """Paired differences of per-seed values ``a[r]``, ``b[r]`` (same length, replicate r of
    each) with the t-based ``level`` interval of their mean across seeds."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (>= 1) of per-seed values, got {len(a)} and {len(b)}")
    d = tuple(float(x) - float(y) for x, y in zip(a, b))
    m = sum(d) / len(d)
    if len(d) < 2:
        return SeedDifference(d, m, None, None, None)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))
    half = t_quantile(0.5 + level / 2, len(d) - 1) * sd / math.sqrt(len(d))
    return SeedDifference(d, m, sd, m - half, m + half)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n trials under p = 1/2: min(1, 2 P(X <= min(k, n-k)))."""
    if n == 0:
        return 1.0
    m = min(k, n - k)
    tail = Fraction(sum(math.comb(n, i) for i in range(m + 1)), 2 ** n)
    return min(1.0, float(2 * tail))


@dataclass(frozen=True)
class McNemar:
    """The per-sample paired comparison of two classifiers over N (seed, image) pairs:
    ``a_only`` = b10 (a right, b wrong), ``b_only`` = b01, exact p and the Agresti-Min interval
    of the paired difference in proportions d = (b10 - b01) / N (module docstring)."""

    n: int
    both: int
    a_only: int
    b_only: int
    neither: int
    p: float
    diff: float
    lo: float
    hi: float

    @property
    def discordant(self) -> int:
        return self.a_only + self.b_only


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool], level: float = 0.95) -> McNemar:
    """McNemar's test on paired outcomes (``a_correct[i]``, ``b_correct[i]``: the same seed and
    image), with the exact binomial p and the Agresti-Min ``level`` interval of the difference."""
    if len(a_correct) != len(b_correct) or not a_correct:
        raise ValueError(f"need paired outcomes of the same length (>= 1), got {len(a_correct)} and {len(b_correct)}")
    both = a_only = b_only = neither = 0
    for x, y in zip(a_correct, b_correct):
        if x and y:
            both += 1
        elif x:
            a_only += 1
        elif y:
            b_only += 1
        else:
            neither += 1
    n = len(a_correct)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    b10, b01, nn = a_only + 0.5, b_only + 0.5, n + 2.0
    d_adj = (b10 - b01) / nn
    se = math.sqrt(max((b10 + b01) - (b10 - b01) ** 2 / nn, 0.0)) / nn
    return McNemar(n, both, a_only, b_only, neither, binomial_two_sided(a_only, a_only + b_only),
                   (a_only - b_only) / n, max(-1.0, d_adj - z * se), min(1.0, d_adj + z * se))


def replicates_needed(mean_diff: float, sd: Optional[float], alpha: float = 0.05, power: float = 0.8,
                      max_n: int = MAX_REPLICATES) -> Optional[int]:
    """The smallest number of replicates R >= 2 for which a paired t-test at two-sided level
    ``alpha`` has ``power`` against the observed mean difference: (t_{1-alpha/2,R-1} +
    t_{power,R-1}) · sd / sqrt(R) <= |mean_diff|. None when it cannot be estimated (no spread
    known, or a zero difference); ``max_n + 1`` when even ``max_n`` replicates are not enough."""
    if sd is None or mean_diff == 0:
        return None
    if sd == 0:
        return 2
    for r in range(2, max_n + 1):
        if (t_quantile(1 - alpha / 2, r - 1) + t_quantile(power, r - 1)) * sd / math.sqrt(r) <= abs(mean_diff):
            return r
    return max_n + 1


def samples_needed(discordance: float, diff: float, alpha: float = 0.05, power: float = 0.8) -> Optional[int]:
    """Paired samples (seed x image pairs) McNemar's test needs at two-sided level ``alpha`` with
    ``power`` (Connor 1987): N = (z_{1-alpha/2} sqrt(p_disc) + z_power sqrt(p_disc - d²))² / d², with
    p_disc the discordance rate and d the difference in proportions. None when d = 0 (no
    difference to detect) or the rates are inconsistent (|d| > p_disc)."""
    if diff == 0 or abs(diff) > discordance or discordance <= 0:
        return None
    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    return math.ceil((za * math.sqrt(discordance) + zb * math.sqrt(discordance - diff ** 2)) ** 2 / diff ** 2)
