"""SpikingJelly 2.x (``spikingjelly.activation_based``): its neurons, surrogates and reset.

What snnrobust relies on (read from SpikingJelly 2.0's source):

- a neuron is a ``MemoryModule`` with a ``surrogate_function`` child module; it fires
  ``surrogate_function(h - v_threshold)`` (forward ``h - v_threshold >= 0``);
- built-in surrogates with a scalar ``alpha`` run a fused kernel (torch reference code on the
  CPU, with a backward); any other ``surrogate_function`` module is called per step by the
  torch reference loop — which is how a swapped-in snnrobust surrogate is used;
- ``functional.reset_net`` clears every memory; it caches the modules to reset per network,
  so the cache is invalidated whenever a surrogate module is swapped;
- ``step_mode`` ``"m"`` takes [T, B, ...] in one call, ``"s"`` one step [B, ...] per call;
- 2.x neurons have no separate eval-mode forward and no ``backend`` attribute: their fused
  kernels carry their own backward, and on the CPU they are torch code, so gradients exist in
  eval mode. 0.x (``backend="cupy"``, its own eval-mode fast paths, other internals) is refused
  with a one-line error rather than half supported.

Surrogate translation (SpikingJelly derivative -> snnrobust kind:param[:scale], identical
functions): Sigmoid(a) -> sigmoid:a; ATan(a) -> atan:a; PiecewiseExp(a) -> exponential:a;
PiecewiseQuadratic(a) = max(0, a - a^2|x|) -> triangle:1/a; SuperSpike(a) = a/(1+|x|)^2 ->
fast-sigmoid:1:a; SoftSign(a) = a/(2(1+a|x|)^2) -> fast-sigmoid:a:a/2;
Erf(a) = a/sqrt(pi) exp(-a^2 x^2) -> gaussian:1/(a sqrt 2).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.surrogates import Surrogate
from .adapter import ForeignNeuron, NativeSurrogate, SpikeModule
from .detect import require_version

FRAMEWORK = "spikingjelly"

# SpikingJelly surrogate class -> (snnrobust kind, param(alpha), scale(alpha))
_SURROGATES: dict[str, tuple[str, Callable[[float], float], Callable[[float], float]]] = {
    "Sigmoid": ("sigmoid", lambda a: a, lambda a: 1.0),
    "ATan": ("atan", lambda a: a, lambda a: 1.0),
    "PiecewiseExp": ("exponential", lambda a: a, lambda a: 1.0),
    "PiecewiseQuadratic": ("triangle", lambda a: 1.0 / a, lambda a: 1.0),
    "SuperSpike": ("fast-sigmoid", lambda a: 1.0, lambda a: a),
    "SoftSign": ("fast-sigmoid", lambda a: a, lambda a: a / 2),
    "Erf": ("gaussian", lambda a: 1.0 / (a * math.sqrt(2.0)), lambda a: 1.0),
}


def _modules():
    require_version(FRAMEWORK)
    from spikingjelly.activation_based import functional, neuron, surrogate

    return functional, neuron, surrogate


def translate(fn: Any, where: str) -> NativeSurrogate:
    """A SpikingJelly surrogate module as a :class:`NativeSurrogate` holding it."""
    if isinstance(fn, SpikeModule):  # already swapped (a wrapper around a wrapped model)
        sg = fn.surrogate
        return NativeSurrogate(sg.kind, sg.param, sg.scale, native=fn)
    _, _, surrogate = _modules()
    name = type(fn).__name__
    alpha = getattr(fn, "alpha", None)
    known = _SURROGATES.get(name)
    if (known is None or type(fn).__module__ != surrogate.__name__ or not getattr(fn, "spiking", True)
            or isinstance(alpha, torch.Tensor) or not isinstance(alpha, (int, float)) or not alpha > 0):
        raise ConfigError(f"unsupported SpikingJelly surrogate {name} on {where}; supported: "
                          f"{', '.join(_SURROGATES)} with spiking=True and a scalar alpha")
    kind, param, scale = known
    a = float(alpha)
    return NativeSurrogate(kind, param(a), scale(a), native=fn)


class SJNeuron(ForeignNeuron):
    """Adapter for one SpikingJelly neuron. Layer estimators apply to ``IFNode`` and
    ``LIFNode`` (exactly these classes) in multi-step mode, whose dynamics it reproduces:
    IF h = v + x; LIF h = v + (x - (v - v_r))/tau (decay_input) or v - (v - v_r)/tau + x;
    spike = H(h - v_threshold); hard reset v = s v_reset + (1 - s) h, soft v = h - s v_threshold."""

    framework = "SpikingJelly"

    def __init__(self, target: nn.Module, path: str) -> None:
        super().__init__(target, path)
        _, neuron, _ = _modules()
        kind = type(target)
        if getattr(target, "step_mode", "s") != "m":
            self.layer_estimators = ("single-step mode (one step per call), and this estimator needs the layer's "
                                     "whole sequence [T, B, ...]; set_step_mode(net, 'm') to use it")
        elif kind not in (neuron.IFNode, neuron.LIFNode):
            self.layer_estimators = f"snnrobust reproduces the dynamics of IFNode and LIFNode only, not {kind.__name__}"
        elif not isinstance(getattr(target, "v_threshold", None), float):
            self.layer_estimators = "v_threshold is not a float"
        else:
            self.layer_estimators = None

    # -- surrogate ---------------------------------------------------------------------
    def _read_native(self) -> NativeSurrogate:
        return translate(self.target.surrogate_function, f"{type(self.target).__name__} ({self.path})")

    def _install_surrogate(self, surrogate: Surrogate) -> None:
        self.target.surrogate_function = SpikeModule(surrogate, strict=False)
        self._invalidate()

    def _restore_surrogate(self, native: Any) -> None:
        self.target.surrogate_function = native
        self._invalidate()

    def _invalidate(self) -> None:
        root = getattr(self, "root", None)
        if root is not None:
            from spikingjelly.activation_based import functional

            functional.invalidate_reset_cache(root)

    # -- dynamics (layer estimators) ---------------------------------------------------
    @property  # type: ignore[override]
    def threshold(self) -> float:
        return float(self.target.v_threshold)

    @property  # type: ignore[override]
    def reset_mode(self) -> str:
        return "soft" if self.target.v_reset is None else "hard"

    @property  # type: ignore[override]
    def v_reset(self) -> float:
        return 0.0 if self.target.v_reset is None else float(self.target.v_reset)

    @property  # type: ignore[override]
    def detach_reset(self) -> bool:
        return bool(self.target.detach_reset)

    @property  # type: ignore[override]
    def leak(self) -> float:
        tau = getattr(self.target, "tau", None)
        return 1.0 if tau is None else 1.0 - 1.0 / float(tau)

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tau = getattr(self.target, "tau", None)
        if tau is None:
            return v + x
        r = self.v_reset
        if self.target.decay_input:
            return v + (x - (v - r)) / tau
        return v - (v - r) / tau + x

    def fire(self, v: torch.Tensor) -> torch.Tensor:
        return self.target.surrogate_function(v - self.threshold)

    def reset_membrane(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.detach_reset:
            s = s.detach()
        if self.reset_mode == "hard":
            return s * self.v_reset + (1.0 - s) * v
        return v - s * self.threshold


def find_neurons(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of every SpikingJelly neuron: a module of ``spikingjelly`` with a
    ``surrogate_function``."""
    return [(name or "<model>", m) for name, m in model.named_modules()
            if type(m).__module__.startswith("spikingjelly.") and hasattr(m, "surrogate_function")]


def adapters(model: nn.Module) -> list[SJNeuron]:
    out = []
    for path, m in find_neurons(model):
        a = SJNeuron(m, path)
        object.__setattr__(a, "root", model)
        out.append(a)
    return out


def reset(model: nn.Module) -> None:
    """SpikingJelly's own reset of every memory (membranes) of ``model``. Runs before every
    forward pass, so it skips the version check (done once by ``wrap``)."""
    from spikingjelly.activation_based import functional

    functional.reset_net(model)


def step_modes(model: nn.Module) -> set[str]:
    """The ``step_mode`` values of the model's SpikingJelly neurons."""
    return {str(getattr(m, "step_mode", "s")) for _, m in find_neurons(model)}
