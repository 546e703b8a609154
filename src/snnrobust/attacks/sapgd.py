"""SA-PGD (Wang et al. 2025): PGD with a sign-free adaptive step, for SNN gradients whose scale
varies wildly across inputs and steps.

Per sample (means over all entries of that sample), with g = ∇L(z_k):

    m ← beta1 · m + g / mean|g|
    v ← beta2 · v + g² / mean(g²)
    L-inf: step = clamp(eta · m / sqrt(v), −eta, eta)
    L2:    step = eta · u / ||u||_2  with u = m / sqrt(v)   (our L2 form: same direction, length eta)
    z ← P(z + step)

eta starts at eps and halves at fixed fractions of the steps (default 30 %, 60 %, 80 %:
eta = eps, eps/2, eps/4, eps/8) — a fixed schedule, so the attack needs no loss-based
heuristics. Each restart keeps each sample's best-loss iterate; across restarts a
misclassified point is preferred, else the higher loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import (
    Attack, Candidates, Search, check_bool, check_choice, check_float, check_int, per_sample, sample_mean,
    sample_norm, stack_trace,
)
from ..errors import ConfigError

LOSS_CHOICES = ("ce", "dlr", "cw")
_TINY = 1e-12


@dataclass
class SAPGDConfig:
    steps: int = 100
    restarts: int = 1
    random_start: bool = True
    loss: str = "ce"
    beta1: float = 0.5                       # first-moment decay
    beta2: float = 0.8                       # second-moment decay
    decay_at: tuple = (0.3, 0.6, 0.8)        # fractions of the steps where eta halves
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "steps", self.steps, 1)
        check_int(attack, "restarts", self.restarts, 1)
        check_bool(attack, "random_start", self.random_start)
        check_choice(attack, "loss", self.loss, LOSS_CHOICES)
        check_float(attack, "beta1", self.beta1, low=0.0, high=1.0, low_open=False)
        check_float(attack, "beta2", self.beta2, low=0.0, high=1.0, low_open=False)
        if not isinstance(self.decay_at, (list, tuple)):
            raise ConfigError(f"attack {attack}: option 'decay_at' must be a list of fractions in (0, 1)")
        for f in self.decay_at:
            check_float(attack, "decay_at", f, low=0.0, high=1.0)
        self.decay_at = tuple(sorted(float(f) for f in self.decay_at))
        check_int(attack, "seed", self.seed, 0)


def eta_schedule(eps: float, steps: int, decay_at: tuple) -> list[float]:
    """Step length for each of the ``steps`` updates: eps, halved at round(f · steps)."""
    marks = [round(f * steps) for f in decay_at]
    return [eps * 0.5 ** sum(1 for m in marks if k >= m) for k in range(steps)]


class SAPGD(Attack):
    name = "sapgd"
    description = "SA-PGD (Wang et al. 2025): normalised-moment adaptive steps, eta halving on a fixed schedule"
    Config = SAPGDConfig
    iterative = True
    kind = "gradient"
    steps_option = "steps"
    restarts_option = "restarts"

    def settings(self) -> dict:
        s = super().settings()
        s["decay_at"] = list(self.config.decay_at)
        return s

    def _search(self, s: Search, zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> Candidates:
        """``steps`` adaptive steps from ``start``; the candidate is each sample's best-loss iterate."""
        c, victim, bdim = self.config, s.victim, s.bdim
        z = start
        loss, g = victim.grad(z, ys, loss=c.loss)
        trace = [loss]
        z_best, loss_best = z.clone(), loss.detach().clone()
        m = torch.zeros_like(zs)
        v = torch.zeros_like(zs)
        etas = eta_schedule(s.eps, c.steps, c.decay_at)
        for k, eta in enumerate(etas):
            m = c.beta1 * m + g / per_sample(sample_mean(g.abs(), bdim) + _TINY, g, bdim)
            v = c.beta2 * v + g * g / per_sample(sample_mean(g * g, bdim) + _TINY, g, bdim)
            u = m / (v.sqrt() + _TINY)
            if s.norm == "linf":
                step = (eta * u).clamp(-eta, eta)
            else:
                step = eta * u / per_sample(sample_norm(u, "l2", bdim) + _TINY, u, bdim)
            z = victim.project(z + step, zs)
            if k == len(etas) - 1:  # the last iterate's gradient would never be used
                loss = victim.loss(z, ys, loss=c.loss)
            else:
                loss, g = victim.grad(z, ys, loss=c.loss)
            trace.append(loss)
            better = loss.detach() > loss_best
            z_best = torch.where(per_sample(better, z, bdim), z, z_best)
            loss_best = torch.where(better, loss.detach(), loss_best)
        return Candidates(z_best, loss_best, stack_trace(trace, c.steps + 1))

    def _meta(self, s: Search) -> dict:
        c = self.config
        return dict(eta_start=s.eps, eta_schedule="halve at " + ", ".join(f"{f:.0%}" for f in c.decay_at)
                    + " of the steps", eta_final=eta_schedule(s.eps, c.steps, c.decay_at)[-1],
                    restarts_run=s.runs, keeps="best-loss iterate per restart")
