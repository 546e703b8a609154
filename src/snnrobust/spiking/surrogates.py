"""Surrogate gradients for the Heaviside spike function.

A spike is ``H(x)`` with ``x = v - threshold`` (membrane potential minus threshold, in
the membrane's units). The forward pass is always the exact step ``x >= 0``; only the
backward pass uses the surrogate derivative ``scale * g(x; param)``.

Every surrogate kind has one shape parameter ``param``:

=================  =========  =========================================================
kind               param      derivative g(x)
=================  =========  =========================================================
atan               alpha      (alpha/2) / (1 + (pi*alpha*x/2)^2)
sigmoid            alpha      alpha * s * (1 - s),  s = sigmoid(alpha*x)
fast-sigmoid       alpha      1 / (1 + alpha*|x|)^2
triangle           width w    max(0, 1 - |x|/w) / w          (seed 001: w=theta, scale=0.3)
rectangle          width w    [|x| < w/2] / w
gaussian           sigma      exp(-x^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)
exponential        alpha      (alpha/2) * exp(-alpha*|x|)
straight-through   (unused)   1
=================  =========  =========================================================

``param`` may be a tensor broadcastable to ``x`` (per-neuron sharpness, e.g. ASSG).
Each kind declares whether its parameter is a sharpness or a width
(:attr:`SurrogateKind.param_is`), so :meth:`Surrogate.widened` knows which way to move it.
A :class:`Surrogate` is a small value object; neurons hold one in ``neuron.surrogate``
and attackers swap it at run time (see :func:`snnrobust.spiking.functional.use_surrogate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

import torch

from ..errors import ConfigError

Param = Union[float, torch.Tensor]
GradFn = Callable[[torch.Tensor, Param], torch.Tensor]


@dataclass(frozen=True)
class SurrogateKind:
    """One registered surrogate shape. ``param_is`` says how its parameter relates to the
    width of the derivative: ``"sharpness"`` (width ~ 1/param), ``"width"`` (width ~ param)
    or ``"none"`` (the parameter is unused; the derivative is constant)."""

    name: str
    param_name: str
    default: float
    grad: GradFn
    doc: str
    param_is: str = "sharpness"

    def __post_init__(self) -> None:
        if self.param_is not in ("sharpness", "width", "none"):
            raise ConfigError(f"surrogate kind {self.name}: param_is must be sharpness, width or none, "
                              f"got {self.param_is!r}")


def _atan(x: torch.Tensor, a: Param) -> torch.Tensor:
    return (a / 2) / (1 + (math.pi * a * x / 2) ** 2)


def _sigmoid(x: torch.Tensor, a: Param) -> torch.Tensor:
    s = torch.sigmoid(a * x)
    return a * s * (1 - s)


def _fast_sigmoid(x: torch.Tensor, a: Param) -> torch.Tensor:
    return 1.0 / (1 + a * x.abs()) ** 2


def _triangle(x: torch.Tensor, w: Param) -> torch.Tensor:
    return torch.clamp(1 - x.abs() / w, min=0) / w


def _rectangle(x: torch.Tensor, w: Param) -> torch.Tensor:
    return (x.abs() < w / 2).to(x.dtype) / w


def _gaussian(x: torch.Tensor, s: Param) -> torch.Tensor:
    s_t = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    return torch.exp(-(x**2) / (2 * s_t**2)) / (math.sqrt(2 * math.pi) * s_t)


def _exponential(x: torch.Tensor, a: Param) -> torch.Tensor:
    a_t = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return (a_t / 2) * torch.exp(-a_t * x.abs())


def _straight_through(x: torch.Tensor, _p: Param) -> torch.Tensor:
    return torch.ones_like(x)


SURROGATES: dict[str, SurrogateKind] = {
    k.name: k
    for k in [
        SurrogateKind("atan", "alpha", 2.0, _atan, "arctangent; larger alpha = sharper", "sharpness"),
        SurrogateKind("sigmoid", "alpha", 4.0, _sigmoid, "derivative of sigmoid(alpha*x)", "sharpness"),
        SurrogateKind("fast-sigmoid", "alpha", 10.0, _fast_sigmoid, "SuperSpike 1/(1+alpha|x|)^2", "sharpness"),
        SurrogateKind("triangle", "width", 1.0, _triangle, "piecewise linear, support |x|<width", "width"),
        SurrogateKind("rectangle", "width", 1.0, _rectangle, "box of total width `width`", "width"),
        SurrogateKind("gaussian", "sigma", 0.5, _gaussian, "normal density with std sigma", "width"),
        SurrogateKind("exponential", "alpha", 2.0, _exponential, "(alpha/2) exp(-alpha|x|)", "sharpness"),
        SurrogateKind("straight-through", "unused", 1.0, _straight_through, "identity gradient", "none"),
    ]
}

_ALIASES = {"ste": "straight-through", "pwl": "triangle", "piecewise-linear": "triangle",
            "fast_sigmoid": "fast-sigmoid", "straight_through": "straight-through"}


def surrogate_kind(name: str) -> SurrogateKind:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in SURROGATES:
        raise ConfigError(
            f"unknown surrogate '{name}'; choose one of: {', '.join(SURROGATES)}"
        )
    return SURROGATES[key]


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate backward. ``x = v - threshold``."""

    @staticmethod
    def forward(ctx, x, param, scale, grad_fn):  # type: ignore[override]
        ctx.save_for_backward(x, param if isinstance(param, torch.Tensor) else None)
        ctx.param = None if isinstance(param, torch.Tensor) else param
        ctx.scale = scale
        ctx.grad_fn = grad_fn
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, p_tensor = ctx.saved_tensors
        p = p_tensor if p_tensor is not None else ctx.param
        return grad_out * ctx.scale * ctx.grad_fn(x, p), None, None, None


@dataclass(frozen=True)
class Surrogate:
    """A surrogate gradient: ``kind`` from :data:`SURROGATES`, its shape ``param``
    (``None`` = the kind's default) and a multiplicative ``scale`` on the derivative."""

    kind: str = "atan"
    param: float | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        k = surrogate_kind(self.kind)
        object.__setattr__(self, "kind", k.name)
        if self.param is None:
            object.__setattr__(self, "param", k.default)
        if not (isinstance(self.param, (int, float)) and self.param > 0):
            raise ConfigError(f"surrogate {k.name}: {k.param_name} must be a positive number, got {self.param!r}")
        if not self.scale > 0:
            raise ConfigError(f"surrogate {k.name}: scale must be positive, got {self.scale!r}")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative dH/dx at ``x`` (used by tests and estimators)."""
        return self.scale * surrogate_kind(self.kind).grad(x, self.param)

    def spike(self, x: torch.Tensor, param: Param | None = None) -> torch.Tensor:
        """Spike = H(x) forward, surrogate backward. ``param`` overrides per call
        (a tensor broadcastable to ``x`` gives per-neuron sharpness)."""
        p = self.param if param is None else param
        return _SpikeFunction.apply(x, p, self.scale, surrogate_kind(self.kind).grad)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "param": self.param, "scale": self.scale}

    def spec(self) -> str:
        """The canonical string ``"kind:param[:scale]"`` (6 significant digits; the scale only
        when it is not 1), e.g. ``"atan:2"``, ``"triangle:1:0.3"``. :meth:`parse` reads it back,
        and stored results and attack ids (``apgd-ce/bptt:atan:2``) use exactly this form."""
        text = f"{self.kind}:{float(self.param):.6g}"  # type: ignore[arg-type]
        return text + (f":{float(self.scale):.6g}" if self.scale != 1 else "")

    @property
    def has_width(self) -> bool:
        """False for a constant derivative (straight-through): widening leaves it as it is."""
        return surrogate_kind(self.kind).param_is != "none"

    def widened(self, factor: float) -> "Surrogate":
        """This surrogate with a derivative ``factor`` times wider (same kind and scale):
        param / factor for a sharpness kind, param * factor for a width kind. A constant
        derivative (straight-through) has no width, so it comes back unchanged."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ConfigError(f"surrogate widening factor must be a positive number, got {factor!r}")
        how = surrogate_kind(self.kind).param_is
        if how == "none":  # a constant is as wide as it gets
            return self
        param = float(self.param) / factor if how == "sharpness" else float(self.param) * factor  # type: ignore[arg-type]
        return Surrogate(self.kind, param, self.scale)

    @staticmethod
    def parse(spec: "str | dict | Surrogate") -> "Surrogate":
        """Accept ``Surrogate``, a dict, or ``"kind[:param[:scale]]"`` (e.g. ``"triangle:1:0.3"``)."""
        if isinstance(spec, Surrogate):
            return spec
        if isinstance(spec, dict):
            unknown = set(spec) - {"kind", "param", "scale"}
            if unknown:
                raise ConfigError(f"surrogate: unknown key(s) {sorted(unknown)}; use kind, param, scale")
            return Surrogate(**spec)
        if isinstance(spec, str):
            parts = spec.split(":")
            try:
                nums = [float(p) for p in parts[1:]]
            except ValueError:
                raise ConfigError(f"surrogate '{spec}': write kind[:param[:scale]], e.g. atan:2") from None
            if len(nums) > 2:
                raise ConfigError(f"surrogate '{spec}': write kind[:param[:scale]], e.g. triangle:1:0.3")
            return Surrogate(parts[0], *nums)
        raise ConfigError(f"surrogate must be a string like 'atan:2' or a dict, got {type(spec).__name__}")
