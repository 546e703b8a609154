"""Adversarial training's shared part: crafting the training batch through snnrobust's own
attack machinery, so that the attacker's choices hold during training as during evaluation.

The model is wrapped in a :class:`~snnrobust.evaluation.victim.Victim` (the threat model's
eps ball and the encoder's pixel range, the gradient estimator of the defender's choice —
default ``bptt``, the model's own surrogate — and EOT over ``eot`` passes for stochastic
encoders such as Poisson: the Victim's default is 10 for them and 1 otherwise). Each
gradient comes from ``Victim.grad``, which runs in its ``attack_mode``: the whole model in
eval mode (BatchNorm normalizes with, and never updates, its running statistics), state reset
before every pass, only the input differentiated (no ``.grad`` left on weights), and every
training flag restored afterwards — the model is back in train mode with its state intact.

Per batch, with P the Victim's projection into the ball and the pixel range:

    z = P(x + U(ball))  (random_start)  or  x
    repeat steps times:  z = P(z + step_size * d(grad CE(z)))      d = sign (L-inf), g/||g||_2 (L2)

then, with ``queries`` > 0, a random search from z (the Square attack's L-inf move, Andriushchenko
et al. 2020): ``queries`` times, each sample draws a square window covering ``query_window`` of
the image and a sign per channel, sets the window to x + eps * sign (clipped into the pixel
range), and keeps the change where the CE loss rises (one forward pass per query, no gradient).
Why: on phase-coded SEW-ResNets trained with PGD alone, Square finds many points no gradient
attack finds (the loss over the eps ball is rugged: spike counts jump), so the model never
trains on them (BENCHMARKS.md, PGD-AT models).

and the step trains on z. With several estimators (``estimator: [bptt, rga]``) the batches take
them in turn, restarting at the first each epoch: a model that learns to mislead one estimator's
gradient (a surrogate it can shape) still meets examples crafted through the others, which
keeps the crafted batch adversarial (BENCHMARKS.md, PGD-AT models).

steps 1 with a random start and step 1.25 eps is Wong et al. 2020's
fast AT; without a random start and step eps it is FGSM training (SNN-RAT's released runs).
The loop is the PGD attack's, written on the Victim's parts rather than through
``Attack.run``: that path also scores the clean batch, each restart and the result by a vote
and takes one more gradient for its loss trace, which training does not use (on single-step
crafting it would more than double the cost); the last iterate is what Madry et al. 2018 train on.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..attacks.base import random_delta, steepest_direction
from ..attacks.square import linf_window_move
from .base import (Defense, check_bool, check_choice, check_int, check_number, input_bounds, none_if_auto,
                   option_error)
from .linearity import linearity_gaps, per_sample_ce


class AdversarialTraining(Defense):
    """Base of pgd-at, fast-at and rat: :meth:`inputs` returns the crafted batch. Options
    (subclasses choose defaults): eps (pixels in [0, 1]), steps, step_size (None: the
    subclass's rule), random_start, norm (linf | l2), estimator (spec as in ``attack
    --estimator``, or a list of specs taken in turn, batch by batch), eot (None: the
    Victim's default), bn_mode (eval: craft against the model as it is evaluated; train: with
    BatchNorm normalizing by the batch's own statistics, as the training step that follows
    does, running statistics untouched)."""

    def _validate(self, opts: dict[str, Any]) -> dict[str, Any]:
        n = self.name
        opts["norm"] = check_choice(n, "norm", opts["norm"], ("linf", "l2"))
        top = 1.0 if opts["norm"] == "linf" else float("inf")  # an L2 ball may reach beyond 1 pixel unit
        opts["eps"] = check_number(n, "eps", opts["eps"], 0.0, top)
        if "steps" in opts:
            opts["steps"] = check_int(n, "steps", opts["steps"])
        if "random_start" in opts:
            opts["random_start"] = check_bool(n, "random_start", opts["random_start"])
        if "queries" in opts:
            opts["queries"] = check_int(n, "queries", opts["queries"], 0)
            if opts["queries"] and opts["norm"] != "linf":
                raise option_error(n, "queries", "0 under norm l2 (the random search moves L-inf windows)",
                                   opts["queries"])
            opts["query_window"] = check_number(n, "query_window", opts.get("query_window", 0.05), 0.0, 1.0)
        if "linearity" in opts:
            opts["linearity"] = check_number(n, "linearity", opts["linearity"], 0.0, low_open=False)
            opts["linearity_draws"] = check_int(n, "linearity_draws", opts.get("linearity_draws", 1))
            if opts["linearity"] and opts["norm"] != "linf":
                raise option_error(n, "linearity", "0 under norm l2 (its random draws are L-inf vertices)",
                                   opts["linearity"])
        opts["step_size"] = (self.default_step(opts) if none_if_auto(opts.get("step_size")) is None
                             else check_number(n, "step_size", opts["step_size"], 0.0, top))
        opts["estimator"] = _check_estimator(n, opts["estimator"])
        opts["bn_mode"] = check_choice(n, "bn_mode", opts.get("bn_mode", "eval"), ("eval", "train"))
        eot = none_if_auto(opts.get("eot"))
        opts["eot"] = None if eot is None else check_int(n, "eot", eot)
        return self._validate_more(opts)

    def _validate_more(self, opts: dict[str, Any]) -> dict[str, Any]:
        return opts

    def default_step(self, opts: dict[str, Any]) -> float:
        """step_size when not given: the pgd attack's 2.5 * eps / steps."""
        return 2.5 * float(opts["eps"]) / int(opts.get("steps", 1))

    @property
    def steps(self) -> int:
        return int(self.settings.get("steps", 1))

    @property
    def random_start(self) -> bool:
        return bool(self.settings.get("random_start", False))

    @property
    def estimators(self) -> list[str]:
        """The estimator specs crafting takes in turn (one for a single spec)."""
        spec = self.settings["estimator"]
        return list(spec) if isinstance(spec, list) else [spec]

    def start_epoch(self, seed: int) -> None:
        super().start_epoch(seed)
        self._batches = 0  # the estimator turn restarts with the epoch: --resume stays exact

    def victim(self, model: nn.Module, index: int = 0):
        """The Victim crafting runs through with the ``index``-th estimator (rebuilt only when
        the model object changes)."""
        cached = getattr(self, "_victims", {})
        if cached.get(index) is not None and cached[index].model is model:
            return cached[index]
        from ..evaluation.threat import ThreatModel
        from ..evaluation.victim import Victim

        s = self.settings
        threat = ThreatModel(norm=s["norm"], eps=s["eps"], bn_mode=s.get("bn_mode", "eval"))
        v = Victim(model, threat=threat, estimator=self.estimators[index],
                   eot=s["eot"], vote=1)  # vote: training never scores the crafted points
        self._victims = {**cached, index: v}
        return v

    def inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        turn = getattr(self, "_batches", 0)
        self._batches = turn + 1
        victim = self.victim(model, turn % len(self.estimators))
        z = craft(victim, x, y, steps=self.steps, step_size=float(self.settings["step_size"]),
                  random_start=self.random_start, gen=self.gen)
        queries = int(self.settings.get("queries", 0))
        if queries:
            z, rises = random_search(victim, x, z, y, queries, float(self.settings["query_window"]), self.gen)
            self._record("query_rises", rises)
        # the linearity penalty needs the clean batch next to the crafted one
        self._clean = x.detach() if self.linearity else None
        return z

    @property
    def linearity(self) -> float:
        return float(self.settings.get("linearity", 0.0))

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CE on the crafted batch ``x``; with ``linearity`` > 0, plus linearity times the mean
        local-linearity gap around the clean batch (:mod:`.linearity`)."""
        clean = getattr(self, "_clean", None)
        if not self.linearity or clean is None or clean.shape != x.shape:
            return super().loss(model, x, y)
        logits = model(x)
        ce = per_sample_ce(logits, y)
        gaps = linearity_gaps(model, clean, y, float(self.settings["eps"]), int(self.settings["linearity_draws"]),
                              input_bounds(model), self.gen, z=x, z_loss=ce)
        self._clean = None
        term = gaps.mean()
        self._record("linearity_gap", float(term.detach()))
        return ce.mean() + self.linearity * term, logits


def craft(victim, x: torch.Tensor, y: torch.Tensor, steps: int, step_size: float, random_start: bool,
          gen: Optional[torch.Generator]) -> torch.Tensor:
    """Adversarial images [B, C, H, W] (detached, inside the victim's eps ball around ``x`` and
    its pixel range) after ``steps`` ascent steps on the CE loss; see the module docstring."""
    z0 = victim.start(x)
    eps, norm = float(victim.threat.eps), victim.threat.norm
    z = victim.project(z0 + random_delta(z0, norm, eps, gen), z0) if random_start else z0
    for _ in range(steps):
        _, g = victim.grad(z, y, loss="ce")
        z = victim.project(z + step_size * steepest_direction(g, norm), z0)
    return z.detach()


def random_search(victim, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor, queries: int, window: float,
                  gen: Optional[torch.Generator]) -> tuple[torch.Tensor, float]:
    """``queries`` Square-style L-inf moves from ``z`` (see the module docstring): images
    [B, C, H, W] in the victim's eps ball around ``x``, detached, and the mean number of kept
    moves per sample. Needs the L-inf threat model and images."""
    B, C, H, W = x.shape
    eps = float(victim.threat.eps)
    x0 = victim.start(x)
    z = z.detach().clone()
    loss = victim.loss(z, y, loss="ce")
    side = min(max(int(round(math.sqrt(window * H * W))), 1), H, W)
    kept = torch.zeros(B, device=z.device)
    for _ in range(queries):
        u = torch.rand((B, 2 + C), generator=gen)
        cand = victim.project(linf_window_move(x0, z, side, u, eps, *victim.bounds), x0)
        c_loss = victim.loss(cand, y, loss="ce")
        up = c_loss > loss
        z = torch.where(up.view(-1, 1, 1, 1), cand, z)
        loss = torch.where(up, c_loss, loss)
        kept += up.to(kept.dtype)
    return z.detach(), float(kept.mean().item())


def _check_estimator(defense: str, spec: Any) -> "str | list[str]":
    """A gradient estimator spec usable in training (``source-ann`` needs a converted
    model's source ANN, which only the evaluation binds), or a list of them (a list of one is
    that spec)."""
    from ..errors import ConfigError
    from ..estimators import get_estimator

    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"config 'defense': {defense} option 'estimator' is an empty list; give one spec "
                              "like bptt, or several like [bptt, rga]")
        specs = [_check_estimator(defense, one) for one in spec]
        if any(isinstance(one, list) for one in specs):
            raise ConfigError(f"config 'defense': {defense} option 'estimator' takes a flat list of specs, "
                              f"got {spec!r}")
        return specs[0] if len(specs) == 1 else specs
    if not isinstance(spec, str):
        raise ConfigError(f"config 'defense': {defense} option 'estimator' must be a spec like bptt or "
                          f"bptt:triangle:0.5, got {spec!r}")
    try:
        est = get_estimator(spec)
    except ConfigError as e:
        raise ConfigError(f"config 'defense': {defense} option 'estimator': {e}") from None
    if est.name == "source-ann":
        raise ConfigError(f"config 'defense': {defense} option 'estimator' cannot be source-ann in training; "
                          "use bptt or another estimator of `snnrobust attack --help`")
    return spec.strip()
