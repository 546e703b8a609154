"""Rates with 95 % Wilson intervals, and the three numbers every evaluation reports.

- clean accuracy: correct clean predictions over all n samples;
- robust accuracy: samples still correct after the attack, over all n samples (a sample
  that is already misclassified counts as not robust);
- attack success rate: samples the attack flipped, over the initially correct ones.

Stochastic models are scored by majority vote over ``vote`` forward passes
(:meth:`Victim.predict` does the vote; the count is recorded with every result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (default 95 %).

    centre = (k + z^2/2) / (n + z^2), half-width = z sqrt(k(n-k)/n + z^2/4) / (n + z^2).
    Unlike the normal approximation it stays inside [0, 1] and is sensible at k = 0 or k = n.
    n = 0 gives the uninformative (0, 1)."""
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z2 = z * z
    denom = n + z2
    centre = (k + z2 / 2) / denom
    half = z * math.sqrt(k * (n - k) / n + z2 / 4) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # Exact ends: the interval must contain 0 at k = 0 and 1 at k = n (rounding aside).
    if k == 0:
        lo = 0.0
    if k == n:
        hi = 1.0
    return lo, hi


@dataclass(frozen=True)
class Rate:
    """k out of n, with its 95 % Wilson interval. ``value`` is NaN when n = 0."""

    k: int
    n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "n", int(self.n))
        if not 0 <= self.k <= self.n:
            raise ValueError(f"Rate needs 0 <= k <= n, got k={self.k}, n={self.n}")

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    @property
    def ci_low(self) -> float:
        return self.ci[0]

    @property
    def ci_high(self) -> float:
        return self.ci[1]

    def to_dict(self) -> dict:
        lo, hi = self.ci
        return {"k": self.k, "n": self.n, "value": None if self.n == 0 else self.value, "ci": [lo, hi]}

    @classmethod
    def from_dict(cls, d: dict) -> "Rate":
        return cls(int(d["k"]), int(d["n"]))

    def percent(self, digits: int = 1) -> str:
        """e.g. ``"97.3% [96.1, 98.1]"`` (the value and its 95 % CI, in percent)."""
        if self.n == 0:
            return "n/a"
        lo, hi = self.ci
        return f"{100 * self.value:.{digits}f}% [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]"

    def __str__(self) -> str:
        return f"{self.percent()} (n={self.n})"


def _count(mask: torch.Tensor) -> int:
    return int(mask.to(torch.bool).sum().item())


def clean_accuracy(correct: torch.Tensor) -> Rate:
    """``correct`` bool [N]: the clean prediction equals the label."""
    return Rate(_count(correct), correct.numel())


def robust_accuracy(robust: torch.Tensor) -> Rate:
    """``robust`` bool [N]: still correct after the attack (False for clean mistakes), over all N."""
    return Rate(_count(robust), robust.numel())


def attack_success_rate(correct: torch.Tensor, robust: torch.Tensor) -> Rate:
    """Flipped samples over the initially correct ones: k = #(correct & ~robust), n = #correct."""
    correct = correct.to(torch.bool)
    return Rate(_count(correct & ~robust.to(torch.bool)), _count(correct))


def majority_vote(predictions: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """[V, B] labels from V stochastic passes -> [B] majority label (ties -> smallest label).

    :meth:`Victim.predict` votes itself; this is the same rule for code that collects
    predictions on its own (e.g. per-pass analysis)."""
    if predictions.dim() != 2:
        raise ValueError(f"majority_vote expects [V, B] labels, got {list(predictions.shape)}")
    k = int(num_classes if num_classes is not None else predictions.max().item() + 1)
    counts = torch.zeros(predictions.shape[1], k, dtype=torch.long, device=predictions.device)
    counts.scatter_add_(1, predictions.t().long(), torch.ones_like(predictions.t(), dtype=torch.long))
    return counts.argmax(1)
