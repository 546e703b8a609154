"""Single-step attacks: FGSM (Goodfellow et al. 2015) and R-FGSM (Tramèr et al. 2018).

FGSM:   z = P(z0 + eps · d(∇L(z0)))
R-FGSM: z1 = P(z0 + alpha · d(random)), z = P(z1 + (eps − alpha) · d(∇L(z1)))

where d(g) is sign(g) under L-inf and g/||g||_2 under L2, and P is ``victim.project`` (eps
ball around z0, then the victim's bounds). Losses are per-sample losses from ``victim.grad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import (
    Attack, AttackResult, BestPoints, batch_dim, begin_run, check_choice, check_float, check_int,
    finish, make_generator, misclassified, on_device, random_delta, steepest_direction,
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

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor) -> AttackResult:
        begin_run(victim)
        bdim = batch_dim(victim)
        eps, norm = float(victim.threat.eps), victim.threat.norm
        z0, y = on_device(victim, z0, y)
        best = BestPoints(z0, misclassified(victim, z0, y), bdim, None)
        loss0, g = victim.grad(z0, y, loss=self.config.loss)
        z = victim.project(z0 + eps * steepest_direction(g, norm, bdim), z0)
        idx = torch.arange(y.shape[0], device=best.success.device)
        # the candidate is the attack's only point: keep it for every not-yet-broken sample
        best.update(idx, z, misclassified(victim, z, y), torch.zeros_like(loss0))
        meta = self.base_meta(victim)
        meta.update(steps=1, step_size=eps, random_start=False,
                    zero_grad_fraction=float((g == 0).float().mean().item()))
        return finish(victim, best, y, meta)


class RFGSM(Attack):
    name = "rfgsm"
    description = "R-FGSM (Tramer et al.): a random step of size alpha, then an (eps - alpha) gradient step"
    Config = RFGSMConfig

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor) -> AttackResult:
        begin_run(victim)
        bdim = batch_dim(victim)
        eps, norm = float(victim.threat.eps), victim.threat.norm
        alpha = eps / 2 if self.config.alpha is None else min(float(self.config.alpha), eps)
        z0, y = on_device(victim, z0, y)
        best = BestPoints(z0, misclassified(victim, z0, y), bdim, None)
        gen = make_generator(self.config.seed)
        # the random step lies on the alpha-sphere of the norm (sign noise for L-inf)
        z1 = victim.project(z0 + random_delta(z0, norm, alpha, gen, bdim, boundary=True), z0)
        loss1, g = victim.grad(z1, y, loss=self.config.loss)
        z = victim.project(z1 + (eps - alpha) * steepest_direction(g, norm, bdim), z0)
        idx = torch.arange(y.shape[0], device=best.success.device)
        best.update(idx, z, misclassified(victim, z, y), torch.zeros_like(loss1))
        meta = self.base_meta(victim)
        meta.update(steps=1, alpha=alpha, step_size=eps - alpha, random_start=True,
                    zero_grad_fraction=float((g == 0).float().mean().item()))
        return finish(victim, best, y, meta)
