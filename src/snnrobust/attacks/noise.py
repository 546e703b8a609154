"""Random-noise baseline at the same eps: the damage any attack must beat.

``draws`` random points z0 + delta per sample (delta uniform in the eps ball, or on its
boundary: ±eps per entry for L-inf, radius exactly eps for L2; for L0 on binary event frames,
eps slots flipped at random; for retiming, a uniformly random valid retiming), each projected by
``victim.project``. A sample counts as broken when any draw fools the victim; it keeps the
first fooling draw, else the last draw. Later draws are only made for samples not broken yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Attack, Candidates, Search, check_choice, check_int, random_delta

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
    kind = "noise"
    steps_option = "draws"
    norms = ("linf", "l2", "l0", "retime")

    def n_searches(self) -> int:
        # each search is one draw: the draws are the attack's steps (its budget), and like
        # restarts each later draw is made only for the samples not broken yet
        return self.config.draws

    def _start(self, s: Search, zs: torch.Tensor) -> torch.Tensor:
        delta = random_delta(zs, s.norm, s.eps, s.gen, s.bdim, boundary=self.config.distribution == "boundary")
        return s.victim.project(zs + delta, zs)

    def _search(self, s: Search, zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> Candidates:
        """The draw itself is the candidate, ranked by its number so that a later draw replaces
        an earlier non-fooling one ("else the last draw")."""
        return Candidates(start, torch.full((zs.shape[s.bdim],), float(restart), device=ys.device))

    def _meta(self, s: Search) -> dict:
        return dict(draws_made=s.runs)
