"""Projected gradient descent (Madry et al. 2018), L-inf and L2.

Per restart:  z_0 = P(z0 + U(ball))  (random start, or z0 itself),
              z_{k+1} = P(z_k + step · d(∇L(z_k))),  k = 0 .. steps-1,
with d = sign (L-inf) or g/||g||_2 (L2) and P = ``victim.project``. Each restart returns its last
iterate (classic PGD); across restarts each sample keeps the best point (a misclassified one
first, else the highest loss). Restart 0 runs on the whole batch; later restarts only on the
samples not broken yet.

``abort_grad_norm`` replicates seed 000's code: when the L2 norm of the batch's input gradient
falls below it, PGD stops for that batch and returns what it has; this is labelled in
``meta["aborted"]`` because it treats gradient masking as an error instead of reporting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import (
    Attack, Candidates, Search, check_bool, check_choice, check_float, check_int, stack_trace,
    steepest_direction,
)

LOSS_CHOICES = ("ce", "dlr", "cw")


@dataclass
class PGDConfig:
    steps: int = 10
    step_size: Optional[float] = None   # z units; None -> 2.5 * eps / steps
    random_start: bool = True           # uniform start in the eps ball
    restarts: int = 1
    loss: str = "ce"                    # "ce" | "dlr" | "cw" (margin)
    abort_grad_norm: Optional[float] = None  # seed-000 replication: 1e-6
    seed: int = 0                       # seeds the random starts

    def validate(self, attack: str) -> None:
        check_int(attack, "steps", self.steps, 1)
        check_float(attack, "step_size", self.step_size, optional=True)
        check_bool(attack, "random_start", self.random_start)
        check_int(attack, "restarts", self.restarts, 1)
        check_choice(attack, "loss", self.loss, LOSS_CHOICES)
        check_float(attack, "abort_grad_norm", self.abort_grad_norm, optional=True)
        check_int(attack, "seed", self.seed, 0)


class PGD(Attack):
    name = "pgd"
    description = "PGD with random start and restarts, CE or DLR loss, L-inf or L2 (step 2.5*eps/steps by default)"
    Config = PGDConfig
    iterative = True
    kind = "gradient"
    steps_option = "steps"
    restarts_option = "restarts"

    def step_size(self, eps: float) -> float:
        c = self.config
        return float(c.step_size) if c.step_size is not None else 2.5 * eps / c.steps

    def _search(self, s: Search, zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> Candidates:
        """``steps`` steps from ``start``; the candidate is the last iterate (classic PGD)."""
        c, victim = self.config, s.victim
        alpha = self.step_size(s.eps)
        # summed on the device: no sync per step
        zero_grad = s.stats.setdefault("zero_grad", torch.zeros((), device=zs.device))
        z = start
        loss, g = victim.grad(z, ys, loss=c.loss)
        trace = [loss]
        stop = False
        for k in range(c.steps):
            zero_grad += (g == 0).float().mean()
            s.stats["n_grad"] = s.stats.get("n_grad", 0) + 1
            if c.abort_grad_norm is not None:
                gnorm = float(g.detach().float().norm().item())
                if gnorm < c.abort_grad_norm:
                    stop = True
                    s.stats["abort_info"] = {"abort_restart": restart, "abort_step": k,
                                             "abort_grad_norm_value": gnorm}
                    break
            z = victim.project(z + alpha * steepest_direction(g, s.norm, s.bdim), zs)
            if k == c.steps - 1:  # the last iterate's gradient would never be used
                loss = victim.loss(z, ys, loss=c.loss)
            else:
                loss, g = victim.grad(z, ys, loss=c.loss)
            trace.append(loss)
        return Candidates(z, loss, stack_trace(trace, c.steps + 1), stop=stop)

    def _meta(self, s: Search) -> dict:
        c = self.config
        zero_grad = s.stats.get("zero_grad")
        meta = dict(step_size=self.step_size(s.eps), restarts_run=s.runs,
                    zero_grad_fraction=(float(zero_grad.item()) if zero_grad is not None else 0.0)
                    / max(s.stats.get("n_grad", 0), 1),
                    aborted="abort_info" in s.stats)
        if c.abort_grad_norm is not None:
            meta["abort_rule"] = ("replicates Luu et al. 2025's code: PGD stops for the batch when the input-gradient "
                                  f"L2 norm < {c.abort_grad_norm:g}")
            meta.update(s.stats.get("abort_info", {}))
        return meta
