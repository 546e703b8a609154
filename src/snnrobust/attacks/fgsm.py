"""Single-step attacks: FGSM (Goodfellow et al. 2015) and R-FGSM (Tramèr et al. 2018).

FGSM:   z = P(z0 + eps · d(∇L(z0)))
R-FGSM: z1 = P(z0 + alpha · d(random)), z = P(z1 + (eps − alpha) · d(∇L(z1)))

where d(g) is sign(g) under L-inf and g/||g||_2 under L2, and P is ``victim.project`` (eps
ball around z0, then the victim's bounds). Losses are per-sample losses from ``victim.grad``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .base import (
    Attack, Candidates, Search, check_choice, check_float, check_int, random_delta, steepest_direction,
)

LOSS_CHOICES = ("ce", "dlr", "cw")


@dataclass
class FGSMConfig:
    loss: str = "ce"  # "ce" | "dlr" | "cw" (per-sample loss maximised)

    def validate(self, attack: str) -> None:
        check_choice(attack, "loss", self.loss, LOSS_CHOICES)


@dataclass
class RFGSMConfig:
    alpha: Optional[float] = None  # random step length in z units; None -> eps / 2
    loss: str = "ce"
    seed: int = 0                  # seeds the random step

    def validate(self, attack: str) -> None:
        check_float(attack, "alpha", self.alpha, low=0.0, low_open=False, optional=True)
        check_choice(attack, "loss", self.loss, LOSS_CHOICES)
        check_int(attack, "seed", self.seed, 0)


class FGSM(Attack):
    name = "fgsm"
    description = "Fast Gradient Sign Method: one step of size eps along the gradient direction"
    Config = FGSMConfig
    kind = "single-step"
    fixed_steps = 1

    def _search(self, s: Search, zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> Candidates:
        """One step of length eps from ``start`` (zs: FGSM has no random start)."""
        loss, g = s.victim.grad(start, ys, loss=self.config.loss)
        s.stats["zero_grad_fraction"] = float((g == 0).float().mean().item())
        z = s.victim.project(start + self.step_length(s) * steepest_direction(g, s.norm, s.bdim), zs)
        # the candidate is the attack's only point: keep it for every not-yet-broken sample
        return Candidates(z, torch.zeros_like(loss))

    def step_length(self, s: Search) -> float:
        return s.eps

    def _meta(self, s: Search) -> dict:
        return dict(steps=1, step_size=s.eps, random_start=False,
                    zero_grad_fraction=s.stats.get("zero_grad_fraction", math.nan))


class RFGSM(FGSM):
    name = "rfgsm"
    description = "R-FGSM (Tramer et al.): a random step of size alpha, then an (eps - alpha) gradient step"
    Config = RFGSMConfig

    def alpha(self, eps: float) -> float:
        return eps / 2 if self.config.alpha is None else min(float(self.config.alpha), eps)

    def _start(self, s: Search, zs: torch.Tensor) -> torch.Tensor:
        """The random step: on the alpha-sphere of the norm (sign noise for L-inf)."""
        delta = random_delta(zs, s.norm, self.alpha(s.eps), s.gen, s.bdim, boundary=True)
        return s.victim.project(zs + delta, zs)

    def step_length(self, s: Search) -> float:
        return s.eps - self.alpha(s.eps)

    def _meta(self, s: Search) -> dict:
        alpha = self.alpha(s.eps)
        return dict(steps=1, alpha=alpha, step_size=s.eps - alpha, random_start=True,
                    zero_grad_fraction=s.stats.get("zero_grad_fraction", math.nan))
