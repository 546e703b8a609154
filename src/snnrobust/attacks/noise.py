"""Random-noise baseline at the same eps: the damage any attack must beat.

``draws`` random points z0 + delta per sample (delta uniform in the eps ball, or on its
boundary: ±eps per entry for L-inf, radius exactly eps for L2), each projected by
``victim.project``. A sample counts as broken when any draw fools the victim; it keeps the
first fooling draw, else the last draw. Later draws are only made for samples not broken yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import (
    Attack, AttackResult, BestPoints, batch_dim, begin_run, check_choice, check_int, finish,
    index_batch, make_generator, misclassified, on_device, random_delta,
)

DISTRIBUTIONS = ("uniform", "boundary")


@dataclass
class NoiseConfig:
    draws: int = 10
    distribution: str = "uniform"  # "uniform" in the ball | "boundary" (on its surface / corners)
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "draws", self.draws, 1)
        check_choice(attack, "distribution", self.distribution, DISTRIBUTIONS)
        check_int(attack, "seed", self.seed, 0)


class Noise(Attack):
    name = "noise"
    description = "random-noise baseline: n uniform draws in the eps ball, broken if any draw fools the model"
    Config = NoiseConfig

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor) -> AttackResult:
        begin_run(victim)
        c = self.config
        bdim = batch_dim(victim)
        eps, norm = float(victim.threat.eps), victim.threat.norm
        z0, y = on_device(victim, z0, y)
        best = BestPoints(z0, misclassified(victim, z0, y), bdim, None)
        gen = make_generator(c.seed)
        all_idx = torch.arange(y.shape[0], device=best.success.device)
        draws_made = 0
        for d in range(c.draws):
            idx = all_idx if d == 0 else (~best.success).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            draws_made += 1
            zs, ys = index_batch(z0, idx, bdim), y[idx]
            z = victim.project(zs + random_delta(zs, norm, eps, gen, bdim,
                                                 boundary=c.distribution == "boundary"), zs)
            # a later draw replaces an earlier non-fooling one ("else the last draw")
            order = torch.full((idx.numel(),), float(d), device=best.loss.device)
            best.update(idx, z, misclassified(victim, z, ys), order)
        meta = self.base_meta(victim)
        meta.update(draws_made=draws_made)
        return finish(victim, best, y, meta)
