"""Square attack (Andriushchenko et al. 2020), L-inf and L2: a score-based random search that
only queries the model's logits. Our implementation, with every random choice drawn per sample.

AutoAttack's official code draws one window position per iteration for the whole batch, so a
sample's outcome there depends on its batch-mates. Here each sample draws its own window(s),
signs (and, under L2, the orientation of the window's pattern) at every iteration from
(seed, its key, search, iteration) (:class:`~snnrobust.keyed_random.SampleDraws`): its outcome
is the same alone, in any batch and on any process. The official code stays available as
``square-aa`` for cross-checks.

Per search, with x the clean image [C, H, W] in [0, 1], n = C*H*W, y its label:

- margin m(z) = logit_y(z) - max_{k != y} logit_k(z) on the victim's logits (the mean over its
  EOT passes); z is adversarial once m <= 0. The search minimises ``loss``: m, or -CE (``ce``).
- start, L-inf: x + eps * s_{c,w} (a random sign per channel and column: vertical stripes);
  L2: a grid of h//5-pixel tiles, each the window pattern eta times a random sign per channel,
  scaled to L2 norm eps. Then clipped into [0, 1].
- iteration i (only samples with m > 0): the window side s = round(sqrt(p_i * n / C)) (L2: at
  least 3 and odd), at most min(H, W), with p_i = p_init halved at fixed fractions of the
  budget (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000; ``resc_schedule`` scales
  them to ``n_queries``, else they count queries).
  L-inf: the window at a random position is set to x + eps * (a random sign per channel).
  L2: window 1 gets the pattern eta (two opposite-signed halves, each peaked in its centre, unit
  norm; transposed at random) times a random sign per channel plus the window's old content
  normalized, rescaled per channel to sqrt(max(eps^2 - ||delta||^2, 0) / C + ||delta on
  windows 1 and 2||^2); window 2 is zeroed; the whole delta is scaled to norm eps.
  The candidate replaces the sample's point when its loss is lower or it is adversarial.
- the candidate offered is the kept point, ranked by -m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import (Attack, Candidates, Search, check_bool, check_choice, check_float, check_int, per_sample, rows_of,
                   sample_norm)

#: fractions (of 10,000) of the budget after which p is halved once more
_P_STEPS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass
class SquareConfig:
    n_queries: int = 5000
    n_restarts: int = 1
    p_init: float = 0.8               # initial fraction of the image a window covers
    loss: str = "margin"              # "margin" | "ce"
    resc_schedule: bool = True        # rescale the window-size schedule to n_queries
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "n_queries", self.n_queries, 1)
        check_int(attack, "n_restarts", self.n_restarts, 1)
        check_float(attack, "p_init", self.p_init, low=0.0, high=1.0)
        check_choice(attack, "loss", self.loss, ("margin", "ce"))
        check_bool(attack, "resc_schedule", self.resc_schedule)
        check_int(attack, "seed", self.seed, 0)


def window_fraction(p_init: float, it: int, n_queries: int, rescale: bool) -> float:
    """p at iteration ``it``: p_init halved once per schedule step passed."""
    t = int(it / n_queries * 10000) if rescale else it
    return p_init / 2 ** sum(t > b for b in _P_STEPS)


def _rectangles(a: int, b: int) -> torch.Tensor:
    """[a, b]: nested rectangles centred on (a//2, b//2), the k-th (k = 0, 1, ...) of
    half-sides k adding 1/(k+1)^2, so the pattern peaks in the centre and decays outwards."""
    r = (torch.arange(a) - a // 2).abs().view(-1, 1)
    c = (torch.arange(b) - b // 2).abs().view(1, -1)
    ring = torch.maximum(r, c)  # the entry lies in the rectangles k >= ring
    k = torch.arange(max(a, b)).view(-1, 1, 1)
    return ((k >= ring) * (1.0 / (k + 1) ** 2)).sum(0).float()


def window_pattern(s: int) -> torch.Tensor:
    """[s, s] unit-L2-norm pattern of the L2 search: the top half a centred bump, the bottom
    half its negative."""
    top = _rectangles(s // 2, s) if s // 2 else torch.zeros(0, s)
    bottom = _rectangles(s - s // 2, s)
    for part in (top, bottom):
        if part.numel():
            part /= part.norm().clamp_min(1e-12)
    eta = torch.cat([top, -bottom], 0)
    return eta / eta.norm().clamp_min(1e-12)


def square_windows(n: int, h: int, w: int, s: int, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices [n, s] of one s x s window per sample at random positions drawn
    from u [n, 2] (uniform)."""
    vh = (u[:, 0] * (h - s + 1)).long().clamp_max(h - s)
    vw = (u[:, 1] * (w - s + 1)).long().clamp_max(w - s)
    ar = torch.arange(s)
    return vh.view(-1, 1) + ar, vw.view(-1, 1) + ar


def window_mask(rows: torch.Tensor, cols: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """bool [n, 1, h, w]: True inside each sample's window."""
    n = rows.shape[0]
    mr = torch.zeros(n, h, dtype=torch.bool).scatter_(1, rows, True)
    mc = torch.zeros(n, w, dtype=torch.bool).scatter_(1, cols, True)
    return (mr.unsqueeze(2) & mc.unsqueeze(1)).unsqueeze(1)


def random_signs(u: torch.Tensor) -> torch.Tensor:
    """-1 where the uniform draw u < 0.5, else +1 (same shape)."""
    return torch.where(u < 0.5, -1.0, 1.0)


def linf_window_move(x: torch.Tensor, z: torch.Tensor, side: int, u: torch.Tensor, eps: float,
                     lo: float, hi: float) -> torch.Tensor:
    """Square's L-inf candidate [n, C, H, W]: ``z`` with one side x side window per sample (its
    position from the uniform draws u[:, :2]) set to x + eps * sign (a sign per channel from
    u[:, 2:]), clipped into [lo, hi]."""
    n, C, H, W = x.shape
    rows, cols = square_windows(n, H, W, side, u[:, :2])
    mask = window_mask(rows, cols, H, W).to(x.device)
    sign = random_signs(u[:, 2:]).view(-1, C, 1, 1).to(x.device, x.dtype)
    return torch.where(mask, (x + eps * sign).clamp(lo, hi), z)


def _l2(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm [n, 1, 1, 1]."""
    return per_sample(sample_norm(t, "l2"), t)


class Square(Attack):
    name = "square"
    description = ("Square attack (Andriushchenko et al. 2020): score-based random search over square windows, "
                   "L-inf or L2, every draw per sample")
    Config = SquareConfig
    kind = "score"
    steps_option = "n_queries"
    restarts_option = "n_restarts"

    def _search(self, s: Search, zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> Candidates:
        c = self.config
        victim = s.victim
        if s.bdim != 0 or zs.dim() != 4:
            raise ConfigError(f"attack {self.name} needs images [B, C, H, W] (perturb=pixels), "
                              f"got inputs of shape {list(zs.shape)}")
        if s.gen is None:  # pragma: no cover - the config always has a seed
            raise RuntimeError("square needs per-sample draws")
        n, C, H, W = zs.shape
        if s.norm == "l2" and min(H, W) < 3:
            raise ConfigError(f"attack {self.name} under L2 needs images of at least 3x3 pixels, got {H}x{W}")
        dev, dt = zs.device, zs.dtype
        lo, hi = victim.bounds
        x = zs
        eps = s.eps
        u0 = s.gen.subset(torch.arange(n), stream=(restart, "init"))
        if s.norm == "linf":
            stripes = random_signs(u0.draw((n, C, 1, W))).to(dev, dt)
            x_best = (x + eps * stripes).clamp(lo, hi)
        else:
            x_best = (x + self._l2_start(u0, n, C, H, W).to(dev, dt) * eps).clamp(lo, hi)
        margin, loss = self._score(victim, x_best, ys, c.loss)
        queries = torch.ones(n, dtype=torch.long)
        for it in range(c.n_queries):
            act = (margin > 0).nonzero().squeeze(1)
            if act.numel() == 0:
                break
            draws = s.gen.subset(act.cpu(), stream=(restart, it))
            xa, xb = x.index_select(0, act), x_best.index_select(0, act)
            p = window_fraction(c.p_init, it, c.n_queries, c.resc_schedule)
            side = max(int(round(math.sqrt(p * H * W))), 1)  # a window covers about p of the image
            if s.norm == "l2":
                side = max(side, 3)
                side += 1 - side % 2
            side = min(side, H, W)
            if s.norm == "linf":
                x_new = linf_window_move(xa, xb, side, draws.draw((act.numel(), 2 + C)), eps, lo, hi)
            else:
                x_new = self._l2_step(draws, xa, xb, side, eps, lo, hi)
            with rows_of(victim, draws.keys):  # the rows queried are these samples
                m_new, l_new = self._score(victim, x_new, ys.index_select(0, act), c.loss)
            better = l_new < loss.index_select(0, act)
            loss[act] = torch.where(better, l_new, loss.index_select(0, act))
            take = better | (m_new <= 0)
            margin[act] = torch.where(take, m_new, margin.index_select(0, act))
            x_best[act] = torch.where(take.view(-1, 1, 1, 1), x_new, xb)
            queries[act.cpu()] += 1
        s.stats["queries"] = s.stats.get("queries", 0) + int(queries.sum().item())
        s.stats["samples"] = s.stats.get("samples", 0) + n
        return Candidates(x_best, -margin)

    @staticmethod
    def _score(victim, z: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(margin [n], loss [n]) of the victim's logits at z (mean over its EOT passes)."""
        with torch.no_grad():
            logits = victim.module()(z).float()
        true = logits.gather(1, y.view(-1, 1)).squeeze(1)
        other = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
        margin = true - other
        if loss == "margin":
            return margin, margin.clone()
        return margin, -F.cross_entropy(logits, y, reduction="none")

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor, keys=None):
        if victim.threat.perturb == "spikes":
            raise ConfigError(f"attack {self.name} perturbs pixels only; use pgd, sapgd or mifgsm for perturb=spikes")
        return super().run(victim, z0, y, keys)

    def _l2_start(self, u, n: int, C: int, H: int, W: int) -> torch.Tensor:
        """The L2 start's direction [n, C, H, W] (unit L2 norm per sample): a grid of tiles of
        side H//5, each the window pattern times a random sign per channel."""
        t = max(H // 5, 1)
        eta = window_pattern(t)
        off_h, off_w = (H - t * (H // t)) // 2, (W - t * (W // t)) // 2
        gh, gw = H // t, W // t
        signs = random_signs(u.draw((n, C, gh, gw)))
        delta = torch.zeros(n, C, H, W)
        tiles = signs.repeat_interleave(t, 2).repeat_interleave(t, 3) * eta.repeat(gh, gw)
        delta[:, :, off_h:off_h + gh * t, off_w:off_w + gw * t] = tiles
        return delta / _l2(delta).clamp_min(1e-12)

    def _l2_step(self, draws, xa: torch.Tensor, xb: torch.Tensor, side: int, eps: float,
                 lo: float, hi: float) -> torch.Tensor:
        """One L2 candidate per active sample (module docstring)."""
        m, C, H, W = xa.shape
        dev, dt = xa.device, xa.dtype
        u = draws.draw((m, 5 + C))
        r1, c1 = square_windows(m, H, W, side, u[:, 0:2])
        r2, c2 = square_windows(m, H, W, side, u[:, 2:4])
        w1 = window_mask(r1, c1, H, W).to(dev)
        both = w1 | window_mask(r2, c2, H, W).to(dev)
        delta = xb - xa
        norm_img = _l2(delta)
        norm_w1 = (delta * w1).pow(2).sum((2, 3), keepdim=True).sqrt()       # [m, C, 1, 1]
        norm_both = (delta * both).pow(2).sum((2, 3), keepdim=True).sqrt()
        eta = window_pattern(side)
        flip = u[:, 4] < 0.5
        pattern = torch.where(flip.view(-1, 1, 1), eta.t().unsqueeze(0), eta.unsqueeze(0))   # [m, s, s]
        sign = random_signs(u[:, 5:]).view(m, C, 1, 1)
        pattern, sign = pattern.to(dev, dt), sign.to(dev, dt)
        b = torch.arange(m, device=dev).view(-1, 1, 1, 1)
        ch = torch.arange(C, device=dev).view(1, -1, 1, 1)
        ri, ci = r1.to(dev).view(m, 1, side, 1), c1.to(dev).view(m, 1, 1, side)
        old = delta[b, ch, ri, ci]                                              # [m, C, s, s]
        new = pattern.unsqueeze(1) * sign + old / (norm_w1 + 1e-12)
        budget = ((eps ** 2 - norm_img ** 2).clamp_min(0) / C + norm_both ** 2).sqrt()
        new = new / new.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * budget
        d = torch.where(both, torch.zeros((), device=dev, dtype=dt), delta)
        d[b, ch, ri, ci] = new
        return (xa + eps * d / _l2(d).clamp_min(1e-12)).clamp(lo, hi)

    def _meta(self, s: Search) -> dict:
        per_sample = s.stats.get("queries", 0) / max(s.stats.get("samples", 1), 1)
        return dict(restarts_run=s.runs, queries_per_sample=per_sample,
                    implementation="snnrobust (per-sample windows and signs, keyed draws)")
