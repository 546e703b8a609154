"""Input encoders: images [B, C, H, W] with pixels in [0, 1] -> inputs [T, B, C, H, W]
(``frames``: event frames [B, T, C, H, W] that already have their time axis).

Every encoder declares:

- ``input_range``: the pixel interval it accepts (attacks clamp into it);
- ``stochastic``: whether two calls on the same image can differ (attacks then use EOT);
- ``backward``: how input gradients are defined through it, so white-box attacks exist:
  ``"exact"`` (direct), ``"ste"`` (straight-through: the gradient of the encoder's
  expected value / reconstruction), ``"relaxed"`` (latency: a linear relaxation of the
  spike time), or ``"zero"`` (the true derivative of a step: no gradient at all, which
  masks gradients and exists to test masking diagnostics);
- ``smoothable``: whether an attacker may replace that backward by the derivative of the code
  averaged over a window of pixel values (``smooth_width``, set only through
  :func:`snnrobust.spiking.functional.use_encoder_smoothing` by the ``encoder-smooth``
  estimator): for a deterministic discrete code (phase bits) the straight-through gradient
  credits every bit, also those no perturbation of the threat model's size can flip.

Stochastic encoders draw from their own ``torch.Generator`` (``manual_seed``) so that
training and evaluation are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError


class Encoder(nn.Module):
    name = "encoder"
    stochastic = False
    smoothable = False
    #: attack time only: the window (pixels) of the smoothed backward; None = ``backward``
    smooth_width: Optional[float] = None
    backward_kinds: tuple[str, ...] = ("ste", "zero")
    input_range = (0.0, 1.0)

    def __init__(self, T: int, backward: Optional[str] = None) -> None:
        super().__init__()
        if not (isinstance(T, int) and T >= 1):
            raise ConfigError(f"encoder {self.name}: T must be a positive integer, got {T!r}")
        self.T = T
        self.backward = backward or self.backward_kinds[0]
        if self.backward not in self.backward_kinds:
            raise ConfigError(
                f"encoder {self.name}: backward must be one of {', '.join(self.backward_kinds)}, got {backward!r}"
            )

    def describe(self) -> dict:
        return {"name": self.name, "T": self.T, "stochastic": self.stochastic,
                "backward": self.backward, "input_range": list(self.input_range)}

    def extra_repr(self) -> str:
        return f"T={self.T}, backward={self.backward}"


class _StraightThrough(torch.autograd.Function):
    """Forward: the discrete code; backward: d(code)/dx := surrogate Jacobian given as
    ``dfdx`` [T, B, ...] (multiplied with the incoming gradient and summed over T)."""

    @staticmethod
    def forward(ctx, x, code, dfdx):  # type: ignore[override]
        ctx.save_for_backward(dfdx)
        return code

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (dfdx,) = ctx.saved_tensors
        return (g * dfdx).sum(0), None, None


def _attach(x: torch.Tensor, code: torch.Tensor, dfdx: Callable[[], torch.Tensor], backward: str) -> torch.Tensor:
    if backward == "zero" or not x.requires_grad:
        return code.detach()
    return _StraightThrough.apply(x, code.detach(), dfdx().detach())


class DirectEncoder(Encoder):
    """Analog input repeated over T (exact gradient)."""

    name = "direct"
    backward_kinds = ("exact",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.T, *x.shape)


class PoissonEncoder(Encoder):
    """Bernoulli rate code: spike_t = [u_t < x], u_t ~ U(0, 1) i.i.d., so E[spike] = x.

    ``signed=True`` is seed 001's encoder on normalized x^ = (x - mean) / std in [-1, 1]:
    spike_t = sign(x^) * [u_t <= |x^|]. Backward "ste" is the gradient of the expected
    value: 1 per step (unsigned) or 1/std (signed)."""

    name = "poisson"
    stochastic = True

    def __init__(self, T: int, backward: Optional[str] = None, signed: bool = False,
                 mean: float = 0.5, std: float = 0.5, seed: Optional[int] = None) -> None:
        super().__init__(T, backward)
        if signed and not std > 0:
            raise ConfigError(f"poisson encoder: std must be > 0, got {std}")
        self.signed, self.mean, self.std = bool(signed), float(mean), float(std)
        self.generator: Optional[torch.Generator] = None
        self._seed = seed
        #: per-sample keyed draws while an attack declares its rows (:func:`keyed_draws`)
        self.pass_draws = None

    def manual_seed(self, seed: int) -> None:
        self._seed = int(seed)
        self.generator = None

    def _gen(self, device: torch.device) -> Optional[torch.Generator]:
        if self._seed is None:
            return None
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self._seed)
        return self.generator

    def _uniform(self, x: torch.Tensor) -> torch.Tensor:
        """[T, B, ...] uniforms: keyed per sample when ``pass_draws`` knows the rows, else from
        the encoder's generator (or the global RNG)."""
        if self.pass_draws is not None and x.dim() >= 1:
            u = self.pass_draws.uniform(x.shape[0], (self.T, *x.shape[1:]))
            if u is not None:
                return u.to(device=x.device, dtype=x.dtype).transpose(0, 1)
        return torch.rand((self.T, *x.shape), generator=self._gen(x.device), device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self._uniform(x)
        if self.signed:
            xh = ((x - self.mean) / self.std).clamp(-1, 1)
            code = torch.sign(xh) * (u <= xh.abs()).to(x.dtype)
            slope = 1.0 / self.std
        else:
            code = (u < x).to(x.dtype)
            slope = 1.0
        return _attach(x, code, lambda: torch.full_like(code, slope), self.backward)

    def describe(self) -> dict:
        return {**super().describe(), "signed": self.signed, "seed": self._seed}


def phase_bits(x: torch.Tensor, K: int) -> torch.Tensor:
    """Binary expansion of x in [0, 1): bit i (MSB first, i = 1..K) is s_i = [r >= 2^-i],
    r <- r - 2^-i s_i. Returns [K, ...] in {0, 1}. Sum_i 2^-i s_i is within 2^-K of x
    (for x = 1 every bit is 1 and the error is exactly 2^-K)."""
    r = x.clone()
    bits = []
    for i in range(1, K + 1):
        w = 2.0**-i
        s = (r >= w).to(x.dtype)
        r = r - w * s
        bits.append(s)
    return torch.stack(bits)


class PhaseEncoder(Encoder):
    """Phase coding with K bits (seed 000): step t (1-based) carries bit mod(t-1, K)+1 of
    ``scale * x``. ``weighted=True`` multiplies it by w(t) = 2^-(1+mod(t-1, K)) (the
    paper's formula); ``weighted=False`` feeds the raw bits (the seed code). ``scale`` =
    255/256 reproduces the seed code's pixel/256. Backward "ste": d bit/dx := 1, so the
    gradient through the weighted code is that of its reconstruction (~x)."""

    name = "phase"
    smoothable = True

    def __init__(self, T: int, backward: Optional[str] = None, K: int = 8,
                 weighted: bool = False, scale: float = 1.0) -> None:
        super().__init__(T, backward)
        if not (isinstance(K, int) and 1 <= K <= 24):
            raise ConfigError(f"phase encoder: K (bits) must be an integer in 1..24, got {K!r}")
        if not 0 < scale <= 1:
            raise ConfigError(f"phase encoder: scale must be in (0, 1], got {scale}")
        self.K, self.weighted, self.scale = K, bool(weighted), float(scale)

    def step_weights(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """w(t) for t = 1..T: 2^-(1 + mod(t-1, K)) — [T]."""
        idx = torch.arange(self.T, device=device) % self.K
        return torch.pow(2.0, -(1.0 + idx.to(dtype)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self._code(x)
        if self.smooth_width is not None:
            # the attacker's smoothed backward: d/dx of the code averaged over [x - w, x + w],
            # (code(x + w) - code(x - w)) / 2w -- a bit counts only where the window flips it
            w = float(self.smooth_width)
            return _attach(x, code, lambda: (self._code(x + w) - self._code(x - w)) / (2 * w), "ste")
        shape = (self.T,) + (1,) * x.dim()
        w_t = self.step_weights(x.device, x.dtype).view(shape)
        # d(code_t)/dx: 1 per raw bit (times w_t when weighted), times the input scale.
        return _attach(x, code, lambda: (w_t if self.weighted else torch.ones_like(w_t)).expand_as(code) * self.scale,
                       self.backward)

    def _code(self, x: torch.Tensor) -> torch.Tensor:
        """The code [T, B, ...] of pixels ``x`` (clamped into [0, 1] first)."""
        bits = phase_bits((x.detach() * self.scale).clamp(0, 1), self.K)
        code = bits[torch.arange(self.T, device=x.device) % self.K]
        if self.weighted:
            code = code * self.step_weights(x.device, x.dtype).view((self.T,) + (1,) * x.dim())
        return code

    def describe(self) -> dict:
        return {**super().describe(), "K": self.K, "weighted": self.weighted, "scale": self.scale}


class LatencyEncoder(Encoder):
    """Time-to-first-spike: each pixel with x > ``threshold`` spikes once, at step
    t_f = round((1 - x) (T - 1)) (0-based; brighter = earlier). Backward "relaxed":
    the spike is treated as the hat max(0, 1 - |t - t_f(x)|) of a continuous t_f."""

    name = "latency"
    backward_kinds = ("relaxed", "zero")

    def __init__(self, T: int, backward: Optional[str] = None, threshold: float = 0.0) -> None:
        super().__init__(T, backward)
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.arange(self.T, device=x.device, dtype=x.dtype).view((self.T,) + (1,) * x.dim())
        tf = (1 - x.clamp(0, 1)) * (self.T - 1)
        active = (x > self.threshold).to(x.dtype)
        code = (t == torch.round(tf)).to(x.dtype) * active

        def dfdx() -> torch.Tensor:
            d = t - tf
            # d/dx [1 - |t - t_f|] = -(T-1) * sign(t - t_f) inside the hat, 0 outside.
            return torch.where(d.abs() < 1, -(self.T - 1) * torch.sign(d), torch.zeros_like(d)) * active

        return _attach(x, code, dfdx, "ste" if self.backward == "relaxed" else "zero")

    def describe(self) -> dict:
        return {**super().describe(), "threshold": self.threshold}


class FramesEncoder(Encoder):
    """Event frames that already have a time axis: [B, T, C, H, W] -> [T, B, C, H, W] (exact
    gradient). The frames come from an event dataset integrated with this encoder's binning:
    ``by`` ("time" or "count") and ``clip`` (1: binary frames, one event per polarity, pixel and
    step; None: event counts), recorded here so a checkpoint says how its input was made. The
    input range is [0, clip] (counts are not bounded above: [0, inf))."""

    name = "frames"
    backward_kinds = ("exact",)

    def __init__(self, T: int, backward: Optional[str] = None, by: str = "time", clip: Optional[int] = 1) -> None:
        super().__init__(T, backward)
        from ..data.events import FrameSpec

        self.spec = FrameSpec(T=T, by=by, clip=clip)  # validates by and clip
        self.by, self.clip = by, clip
        self.input_range = (0.0, float(clip) if clip is not None else float("inf"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[1] != self.T:
            raise ConfigError(f"frames encoder: expected frames [B, T={self.T}, C, H, W], got {list(x.shape)}; "
                              "load the event dataset with this model's binning")
        return x.transpose(0, 1)

    def describe(self) -> dict:
        return {**super().describe(), "by": self.by, "clip": self.clip}

    def extra_repr(self) -> str:
        return f"T={self.T}, by={self.by}, clip={self.clip}"


@dataclass(frozen=True)
class EncoderEntry:
    cls: type
    description: str


ENCODERS: dict[str, EncoderEntry] = {
    "direct": EncoderEntry(DirectEncoder, "analog pixels repeated over T (exact gradient)"),
    "poisson": EncoderEntry(PoissonEncoder, "Bernoulli rate code, seedable; signed=True is Sharmin et al. 2020's"),
    "phase": EncoderEntry(PhaseEncoder, "K-bit phase code, weighted or raw bits (Luu et al. 2025)"),
    "latency": EncoderEntry(LatencyEncoder, "time to first spike, one spike per pixel"),
    "frames": EncoderEntry(FramesEncoder, "event frames [B, T, 2, H, W] from an event dataset (binning by/clip)"),
}


def create_encoder(name: str, T: int, **options) -> Encoder:
    """Build an encoder by name; unknown names or options give a one-line ConfigError."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder '{name}'; choose one of: {', '.join(ENCODERS)}")
    cls = ENCODERS[name].cls
    try:
        return cls(T, **options)
    except TypeError as e:
        import inspect

        allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "T")]
        raise ConfigError(f"encoder {name}: bad option(s) {sorted(options)}; allowed: {', '.join(allowed)}") from e
