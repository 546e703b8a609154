"""The threat model as data: which perturbations the attacker may make.

Stored with every result, so that every robust-accuracy number travels with its budget.

- ``norm``: ``"linf"`` or ``"l2"`` (per-sample norm of the perturbation), or ``"l0"`` for binary
  inputs (event frames read with ``clip: 1``): ``eps`` is then a whole number of flipped
  slots per sample — an inserted event (0 -> 1) or a deleted one (1 -> 0) each costs one —
  and every projected point stays binary (at most one event per polarity, pixel and step);
  or ``"retime"`` for binary event frames [B, T, C, H, W]: every event may move in time by at
  most ``eps`` frames (a whole number), none is added or removed, their order per pixel and
  polarity is kept and no two share a slot.
- ``eps``: the budget, in pixel units of the [0, 1] image before encoding (the default,
  ``perturb="pixels"``), or in units of the encoded tensor [T, B, C, H, W] when
  ``perturb="spikes"``. Strings such as ``"8/255"`` are accepted (:func:`parse_eps`).
- ``perturb="spikes"`` adds the perturbation to the encoded spike tensor instead of the
  image. This is how seed 000's code attacks; it is *not* a valid threat model for an
  input-level attacker and exists only to replicate that paper, so :meth:`ThreatModel.label`
  shouts it in every output.
- ``bn_mode="train"`` crafts gradients with BatchNorm layers using batch statistics (seed
  000's code; scoring is always in eval mode). As an attack setting it is a labelled
  replication option only; adversarial training may craft with it (the defenses' ``bn_mode``),
  against the model as its training step evaluates it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from ..errors import ConfigError

NORMS = ("linf", "l2", "l0", "retime")
PERTURB = ("pixels", "spikes")
#: what the unperturbed input is: images (pixels in [0, 1]) or event frames [T, 2, H, W] (set by
#: the evaluation from the model's encoder; it only changes how the threat model is described)
DOMAINS = ("images", "event-frames")
#: norms of the event domain (binary event frames)
EVENT_NORMS = ("l0", "retime")
BN_MODES = ("eval", "train")

_NORM_ALIASES = {"linf": "linf", "l_inf": "linf", "inf": "linf", "l-inf": "linf", "li": "linf",
                 "l2": "l2", "l_2": "l2", "2": "l2", "l0": "l0", "l_0": "l0", "0": "l0",
                 "retime": "retime"}


def parse_eps(eps: Any) -> float:
    """A budget as a float: numbers, ``"0.03"`` or fractions like ``"8/255"``.
    Must be finite and >= 0 (one-line ConfigError otherwise)."""
    value: float
    if isinstance(eps, bool):
        raise ConfigError(f"eps must be a number or a fraction like 8/255, got {eps!r}")
    if isinstance(eps, (int, float)):
        value = float(eps)
    elif isinstance(eps, torch.Tensor) and eps.numel() == 1:
        value = float(eps.item())
    elif isinstance(eps, str):
        text = eps.strip().replace(" ", "")
        try:
            if "/" in text:
                num, den = text.split("/")
                value = float(num) / float(den)
            else:
                value = float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"eps '{eps}' is not a number; write e.g. 8/255 or 0.031") from None
    else:
        raise ConfigError(f"eps must be a number or a fraction like 8/255, got {type(eps).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"eps must be finite and >= 0, got {eps!r}")
    return value


def format_eps(eps: "float | None", decimal: bool = True, missing: str = "?") -> str:
    """The one text form of a budget, used by every table, label and report.

    ``8/255 (0.0314)`` when ``eps`` is a whole number of 8-bit grey levels in (0, 1)
    (``8/255`` with ``decimal=False``, for narrow table columns), else ``0.5`` (4
    significant digits); ``missing`` when ``eps`` is None (unknown).
    """
    if eps is None:
        return missing
    k = eps * 255
    if 0 < eps < 1 and abs(k - round(k)) < 1e-6:
        return f"{int(round(k))}/255" + (f" ({eps:.4f})" if decimal else "")
    return f"{eps:.4g}"


@dataclass
class ThreatModel:
    """Who may change what, by how much. Validated on construction."""

    norm: str = "linf"
    eps: float = 8 / 255
    perturb: str = "pixels"
    bn_mode: str = "eval"
    domain: str = "images"

    def __post_init__(self) -> None:
        norm = str(self.norm).strip().lower()
        if norm not in _NORM_ALIASES:
            raise ConfigError(f"threat model norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        self.norm = _NORM_ALIASES[norm]
        self.eps = parse_eps(self.eps)
        if self.norm in EVENT_NORMS and self.eps != int(self.eps):
            what = "flipped event slots" if self.norm == "l0" else "frames an event may move"
            raise ConfigError(f"an {self.norm} budget is a whole number of {what}, got eps={self.eps:g}")
        if self.norm in EVENT_NORMS and self.perturb == "spikes":
            raise ConfigError(f"the {self.norm} threat model changes input events; it cannot be combined with "
                              "perturb=spikes")
        if self.perturb not in PERTURB:
            raise ConfigError(
                f"threat model perturb must be one of {', '.join(PERTURB)} "
                f"('spikes' only replicates Luu et al. 2025's code), got {self.perturb!r}"
            )
        if self.domain not in DOMAINS:
            raise ConfigError(f"threat model domain must be one of {', '.join(DOMAINS)}, got {self.domain!r}")
        if self.bn_mode not in BN_MODES:
            raise ConfigError(
                f"threat model bn_mode must be one of {', '.join(BN_MODES)} "
                f"('train' only replicates Luu et al. 2025's code), got {self.bn_mode!r}"
            )

    # -- description ---------------------------------------------------------------------
    @property
    def replication_options(self) -> list[str]:
        """The non-standard options in force (empty for a valid input-level threat model)."""
        opts = []
        if self.perturb == "spikes":
            opts.append("perturbation on SPIKE TENSOR")
        if self.bn_mode == "train":
            opts.append("BN in TRAIN mode while crafting")
        return opts

    @property
    def is_replication(self) -> bool:
        return bool(self.replication_options)

    def label(self) -> str:
        """One line for tables and logs, e.g. ``Linf eps=8/255 (0.0314) on pixels`` or
        ``Linf eps=6/255 (0.0235) on SPIKE TENSOR, BN in TRAIN mode (replicates Luu et al. 2025's code)``."""
        if self.norm == "l0":
            return f"L0 {int(self.eps)} flipped event slots (insertions + deletions) on binary event frames"
        if self.norm == "retime":
            return (f"retiming: every event moved by at most {int(self.eps)} frames (count and order kept) on binary "
                    "event frames")
        norm = "Linf" if self.norm == "linf" else "L2"
        if self.perturb == "spikes":
            where = "SPIKE TENSOR"
        elif self.domain == "event-frames":
            where = "real-valued event frames (not physically realisable)"
        else:
            where = "pixels"
        text = f"{norm} eps={format_eps(self.eps)} on {where}"
        if self.bn_mode == "train":
            text += ", BN in TRAIN mode while crafting"
        if self.is_replication:
            text += " (replicates Luu et al. 2025's code)"
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label"] = self.label()
        return d

    @classmethod
    def from_dict(cls, d: "dict | ThreatModel") -> "ThreatModel":
        if isinstance(d, ThreatModel):
            return d
        if not isinstance(d, dict):
            raise ConfigError(f"threat model must be a mapping with norm/eps/perturb/bn_mode, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names - {"label"}
        if unknown:
            raise ConfigError(f"threat model: unknown key(s) {sorted(unknown)}; use {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def with_eps(self, eps: Any) -> "ThreatModel":
        return replace(self, eps=parse_eps(eps))

    # -- geometry ------------------------------------------------------------------------
    def project(self, z: torch.Tensor, z0: torch.Tensor, bounds: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Map ``z`` into the eps ball around ``z0`` (per sample: dim 0 is the batch for
        pixels [B, C, H, W]; for spike tensors [T, B, ...] the batch is dim 1), then clamp
        into ``bounds``. Clamping after the ball keeps the point inside the ball as long
        as ``z0`` lies inside ``bounds`` (each coordinate moves towards z0), so the result
        is always feasible (for L2 it is not the exact Euclidean projection onto the
        intersection, which attacks do not need)."""
        delta = (z - z0).detach()
        if self.norm == "l0":
            return project_flips(z, z0, int(self.eps))
        if self.norm == "retime":
            return project_retiming(z, z0, int(self.eps))
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            bdim = 1 if (self.perturb == "spikes" and z.dim() >= 2) else 0
            reduce = [d for d in range(z.dim()) if d != bdim]
            norms = delta.pow(2).sum(dim=reduce, keepdim=True).sqrt() if reduce else delta.abs()
            factor = torch.clamp(self.eps / (norms + 1e-12), max=1.0)
            delta = delta * factor
        lo, hi = bounds
        return (z0.detach() + delta).clamp(lo, hi)

    def distance(self, z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """Per-sample size [B] of the move from ``z0`` to ``z`` in this threat model's units (what
        must be <= eps): :meth:`norm_of` of the difference, or for retiming the largest shift of
        any event (inf when the events' count per pixel and polarity changed or a value is not
        binary)."""
        if self.norm == "retime":
            return retiming_shift(z, z0)
        return self.norm_of(z - z0)

    def norm_of(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of a perturbation (same batch convention as :meth:`project`) — [B]."""
        bdim = 1 if (self.perturb == "spikes" and delta.dim() >= 2) else 0
        flat = delta.movedim(bdim, 0).reshape(delta.shape[bdim], -1)
        if self.norm == "l0":
            return (flat.abs() > 0.5).sum(1).to(delta.dtype)  # flipped slots of binary frames
        return flat.abs().amax(1) if self.norm == "linf" else flat.norm(dim=1)


def project_flips(z: torch.Tensor, z0: torch.Tensor, k: int) -> torch.Tensor:
    """The binary point nearest to ``z`` with at most ``k`` slots flipped from the binary ``z0``
    (per sample, batch on dim 0): the ``k`` entries that moved furthest towards their flip
    (|z - z0| >= 0.5) are flipped, every other entry keeps z0's value."""
    z0 = z0.detach()
    B = z0.shape[0]
    move = (z.detach() - z0).abs().reshape(B, -1)
    flip = move >= 0.5
    if k < move.shape[1]:
        keep = torch.zeros_like(flip)
        if k > 0:
            top = move.topk(k, dim=1).indices
            keep.scatter_(1, top, True)
        flip &= keep
    flipped = torch.where(flip, 1.0 - z0.reshape(B, -1), z0.reshape(B, -1))
    return flipped.reshape(z0.shape)


def _columns(z: torch.Tensor) -> torch.Tensor:
    """Binary frames [B, T, ...] as time columns [B * (pixels and channels), T]."""
    B, T = z.shape[:2]
    return z.reshape(B, T, -1).transpose(1, 2).reshape(-1, T)


def _event_times(cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(times [N, m] of each column's events in order, padded with T; count [N])."""
    N, T = cols.shape
    on = cols > 0.5
    count = on.sum(1)
    t = torch.arange(T, device=cols.device).expand(N, T)
    times = torch.where(on, t, torch.full_like(t, T)).sort(1).values
    m = int(count.max().item()) if N else 0
    return times[:, :max(m, 1)], count


def project_retiming(z: torch.Tensor, z0: torch.Tensor, k: int) -> torch.Tensor:
    """A valid retiming of the binary frames ``z0`` [B, T, C, H, W] that follows the relaxed
    candidate ``z``: per pixel and polarity, the i-th event (time t_i) moves to the slot s_i in
    [max(t_i - k, s_{i-1} + 1), min(t_i + k, T - (m - i))] where ``z`` is largest (greedy in
    event order; the window always holds a slot, so every event keeps a place, in order, one
    per slot). With z = z0 every event stays where it was."""
    z0 = z0.detach()
    B, T = z0.shape[:2]
    c0, score = _columns(z0), _columns(z.detach().to(z0.dtype))
    times, count = _event_times(c0)
    N, m = times.shape
    out = torch.zeros_like(c0)
    prev = torch.full((N,), -1, dtype=torch.long, device=z0.device)
    offsets = torch.arange(-k, k + 1, device=z0.device)
    for i in range(m):
        live = count > i
        if not bool(live.any()):
            break
        t_i = times[:, i]
        lo = torch.maximum(t_i - k, prev + 1)
        hi = torch.minimum(t_i + k, T - (count - i))
        cand = (t_i.unsqueeze(1) + offsets).clamp(0, T - 1)  # [N, 2k+1]
        ok = (cand >= lo.unsqueeze(1)) & (cand <= hi.unsqueeze(1))
        val = torch.where(ok, score.gather(1, cand), torch.full(cand.shape, -float("inf"), dtype=score.dtype,
                                                                   device=score.device))
        # ties: the slot nearest the original time (offsets run -k..k, so prefer |offset| small)
        val = val - 1e-6 * offsets.abs().to(score.dtype)
        s_i = cand.gather(1, val.argmax(1, keepdim=True)).squeeze(1)
        s_i = torch.where(live, s_i, prev)
        out[live, s_i[live]] = 1.0
        prev = s_i
    C_rest = z0.shape[2:]
    return out.reshape(B, -1, T).transpose(1, 2).reshape(B, T, *C_rest)


def retiming_shift(z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """Per sample [B]: the largest |s_i - t_i| between the i-th events of ``z`` and ``z0`` of every
    pixel and polarity (events matched in time order, the matching that minimises it); inf
    when a value is not 0/1 or a count differs."""
    B, T = z0.shape[:2]
    c, c0 = _columns(z.detach()), _columns(z0.detach())
    binary = ((c == 0) | (c == 1)).reshape(B, -1).all(1)
    t, n = _event_times(c)
    t0, n0 = _event_times(c0)
    m = max(t.shape[1], t0.shape[1])
    pad = lambda a: torch.nn.functional.pad(a, (0, m - a.shape[1]), value=T)  # noqa: E731
    shift = (pad(t) - pad(t0)).abs().amax(1).reshape(B, -1).amax(1).to(torch.float32)
    same_count = (n == n0).reshape(B, -1).all(1)
    return torch.where(binary & same_count, shift, torch.full_like(shift, float("inf")))
