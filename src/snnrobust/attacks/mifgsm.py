"""MI-FGSM (Dong et al. 2018): iterative FGSM with momentum on the L1-normalised gradient.

    m_{k+1} = mu · m_k + g_k / ||g_k||_1           (per sample)
    z_{k+1} = P(z_k + step · d(m_{k+1}))           d = sign (L-inf) or m/||m||_2 (L2)

from z0 (no random start); step defaults to eps / steps so that the iterates can just reach the
ball's boundary. Returns the last iterate (z0 kept for samples misclassified from the start
unless the last iterate is misclassified too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import (
    Attack, Candidates, Search, check_choice, check_float, check_int, per_sample, sample_norm, stack_trace,
    steepest_direction,
)

LOSS_CHOICES = ("ce", "dlr", "cw")


@dataclass
class MIFGSMConfig:
    steps: int = 10
    step_size: Optional[float] = None  # z units; None -> eps / steps
    mu: float = 1.0                    # momentum decay
    loss: str = "ce"

    def validate(self, attack: str) -> None:
        check_int(attack, "steps", self.steps, 1)
        check_float(attack, "step_size", self.step_size, optional=True)
        check_float(attack, "mu", self.mu, low=0.0, low_open=False)
        check_choice(attack, "loss", self.loss, LOSS_CHOICES)


class MIFGSM(Attack):
    name = "mifgsm"
    description = "Momentum iterative FGSM (Dong et al.): momentum mu on the L1-normalised gradient"
    Config = MIFGSMConfig
    iterative = True
    kind = "gradient"
    steps_option = "steps"

    def step_size(self, eps: float) -> float:
        c = self.config
        return float(c.step_size) if c.step_size is not None else eps / c.steps

    def _search(self, s: Search, zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> Candidates:
        """``steps`` momentum steps from ``start`` (zs); the candidate is the last iterate."""
        c, victim = self.config, s.victim
        alpha = self.step_size(s.eps)
        z = start
        loss, g = victim.grad(z, ys, loss=c.loss)
        trace = [loss]
        m = torch.zeros_like(zs)
        for k in range(c.steps):
            l1 = sample_norm(g, "l1", s.bdim).clamp_min(1e-12)
            m = c.mu * m + g / per_sample(l1, g, s.bdim)
            z = victim.project(z + alpha * steepest_direction(m, s.norm, s.bdim), zs)
            if k == c.steps - 1:  # the last iterate's gradient would never be used
                loss = victim.loss(z, ys, loss=c.loss)
            else:
                loss, g = victim.grad(z, ys, loss=c.loss)
            trace.append(loss)
        return Candidates(z, loss, stack_trace(trace, c.steps + 1))

    def _meta(self, s: Search) -> dict:
        return dict(step_size=self.step_size(s.eps), random_start=False)
