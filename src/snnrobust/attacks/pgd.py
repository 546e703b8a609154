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
    Attack, AttackResult, BestPoints, batch_dim, begin_run, check_bool, check_choice, check_float,
    check_int, finish, index_batch, make_generator, misclassified, on_device, random_delta,
    stack_trace, steepest_direction,
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

    def step_size(self, eps: float) -> float:
        c = self.config
        return float(c.step_size) if c.step_size is not None else 2.5 * eps / c.steps

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor) -> AttackResult:
        begin_run(victim)
        c = self.config
        bdim = batch_dim(victim)
        eps, norm = float(victim.threat.eps), victim.threat.norm
        alpha = self.step_size(eps)
        z0, y = on_device(victim, z0, y)
        best = BestPoints(z0, misclassified(victim, z0, y), bdim, c.steps + 1)
        gen = make_generator(c.seed)
        all_idx = torch.arange(y.shape[0], device=best.success.device)
        aborted, abort_info, restarts_run = False, {}, 0
        zero_grad, n_grad = torch.zeros((), device=z0.device), 0  # summed on device: no sync per step

        for r in range(c.restarts):
            idx = all_idx if r == 0 else (~best.success).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            restarts_run += 1
            zs, ys = index_batch(z0, idx, bdim), y[idx]
            z = zs
            if c.random_start:
                z = victim.project(zs + random_delta(zs, norm, eps, gen, bdim), zs)
            loss, g = victim.grad(z, ys, loss=c.loss)
            trace = [loss]
            for k in range(c.steps):
                zero_grad += (g == 0).float().mean()
                n_grad += 1
                if c.abort_grad_norm is not None:
                    gnorm = float(g.detach().float().norm().item())
                    if gnorm < c.abort_grad_norm:
                        aborted = True
                        abort_info = {"abort_restart": r, "abort_step": k, "abort_grad_norm_value": gnorm}
                        break
                z = victim.project(z + alpha * steepest_direction(g, norm, bdim), zs)
                loss, g = victim.grad(z, ys, loss=c.loss)
                trace.append(loss)
            best.update(idx, z, misclassified(victim, z, ys), loss, stack_trace(trace, c.steps + 1))
            if aborted:
                break

        meta = self.base_meta(victim)
        meta.update(step_size=alpha, restarts_run=restarts_run,
                    zero_grad_fraction=float(zero_grad.item()) / max(n_grad, 1), aborted=aborted)
        if c.abort_grad_norm is not None:
            meta["abort_rule"] = ("seed-000 replication: PGD stops for the batch when the input-gradient "
                                  f"L2 norm < {c.abort_grad_norm:g}")
            meta.update(abort_info)
        return finish(victim, best, y, meta)
