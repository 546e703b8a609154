"""Gradient-guided attacks on binary event frames: insert and delete at most k events (``eventflip``,
threat model L0), or move every event by at most k frames (``retime``).

The threat model ``norm="l0"``, ``eps=k``: the attacker flips at most k slots of the binary
frames [B, T, 2, H, W] (0 -> 1 inserts an event, 1 -> 0 deletes one). Flips are discrete, so
the search runs in a relaxed copy r in [0, 1]^d of the frames and projects it back every step
(Croce & Hein's sparse-PGD idea, without their step-size schedule):

    r_0 = z0 (or a random k-flip point),  z_0 = P_k(r_0)
    r_{t+1} = clip(r_t + step * g_t / max|g_t|, 0, 1),   g_t = dL/dz at z_t (the victim's estimator)
    z_{t+1} = P_k(r_{t+1})

where P_k (:func:`~snnrobust.evaluation.threat.project_flips`) flips the k slots whose relaxed
value moved furthest (at least half-way) from z0. The gradient is always taken at the binary
point the model would see. The loss is the margin max_{j != y} logit_j - logit_y by default,
so the kept iterate (the highest margin of the run) is a misclassified one whenever one was
reached. Its baseline is ``noise`` under the same threat model: k random flips per draw.
``retime`` runs the same ascent with the retiming projection (each event to the best slot of its
window, in order); its baseline is ``noise`` there too (a uniformly random valid retiming).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import (Attack, Candidates, Search, check_bool, check_choice, check_float, check_int, per_sample,
                   sample_norm, stack_trace)

LOSS_CHOICES = ("cw", "ce")


@dataclass
class EventFlipConfig:
    steps: int = 20
    step_size: float = 0.5       # relaxed units moved by the slot with the largest gradient per step
    random_start: bool = False   # start from k random flips
    restarts: int = 1
    loss: str = "cw"             # "cw" (margin; > 0 = misclassified) | "ce"
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "steps", self.steps, 1)
        check_float(attack, "step_size", self.step_size)
        check_bool(attack, "random_start", self.random_start)
        check_int(attack, "restarts", self.restarts, 1)
        check_choice(attack, "loss", self.loss, LOSS_CHOICES)
        check_int(attack, "seed", self.seed, 0)


class EventFlip(Attack):
    name = "eventflip"
    description = "L0 attack on binary event frames: relaxed gradient ascent projected to the k best event flips"
    Config = EventFlipConfig
    iterative = True
    kind = "gradient"
    steps_option = "steps"
    restarts_option = "restarts"
    norms = ("l0",)

    def _search(self, s: Search, zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> Candidates:
        """``steps`` relaxed steps from ``start``; the candidate is the iterate with the highest loss."""
        c, victim = self.config, s.victim
        relaxed = start.clone()
        z = start
        loss, g = victim.grad(z, ys, loss=c.loss)
        best_z, best_loss = z.clone(), loss.clone()
        trace = [loss]
        for _ in range(c.steps):
            scale = sample_norm(g, "linf", s.bdim).clamp_min(1e-12)
            relaxed = (relaxed + c.step_size * g / per_sample(scale, g, s.bdim)).clamp(0.0, 1.0)
            z = victim.project(relaxed, zs)
            loss, g = victim.grad(z, ys, loss=c.loss)
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_z = torch.where(per_sample(better, z, s.bdim), z, best_z)
            trace.append(loss)
        return Candidates(best_z, best_loss, stack_trace(trace, c.steps + 1))

    def _meta(self, s: Search) -> dict:
        return dict(restarts_run=s.runs, flips=int(s.eps))


class EventRetime(EventFlip):
    """The same relaxed ascent under the retiming threat model: the projection
    (:func:`~snnrobust.evaluation.threat.project_retiming`) moves each event, within +-k frames
    and in order, to the slot where the relaxed frames are largest."""

    name = "retime"
    description = "retiming attack on binary event frames: relaxed gradient ascent, each event moved <= k frames"
    norms = ("retime",)

    def _meta(self, s: Search) -> dict:
        return dict(restarts_run=s.runs, max_shift_frames=int(s.eps))
