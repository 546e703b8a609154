"""snnTorch 1.x: its ``Leaky`` neuron, ``spike_grad`` surrogates and hidden-state reset.

What snnrobust relies on (read from snnTorch 1.0's source):

- a neuron (``snntorch.SpikingNeuron``) fires ``spike_grad(mem - threshold)`` with forward
  ``mem - threshold > 0`` (strict) and also calls it, detached, for the reset;
- ``spike_grad`` is a plain attribute holding a closure made by a factory in
  ``snntorch.surrogate`` (``atan(alpha)``, ``fast_sigmoid(slope)``, ...); its parameter is in the
  closure;
- ``Leaky`` is called once per time step with [B, ...]; its membrane lives in the buffer
  ``mem`` (not in the state_dict) when ``init_hidden=True``, else it is passed in and out by the
  user's loop. The forward re-creates it as zeros when its shape differs from the input's.
  (``snntorch.utils.reset`` resets every Leaky ever created in the process, through a class
  list; resetting the model's own neurons is enough and touches nothing else.)

Surrogate translation (identical derivatives): atan(a) -> atan:a; fast_sigmoid(k) ->
fast-sigmoid:k; sigmoid(k) -> sigmoid:k; straight_through_estimator() -> straight-through.
Layer estimators (HART, RGA, BPTR, PDSG, ASSG) need a layer's whole sequence in one call,
which a per-step neuron never gives, so they are not applicable to snnTorch neurons.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..spiking.surrogates import Surrogate
from .adapter import ForeignNeuron, NativeSurrogate, heaviside
from .detect import require_version

FRAMEWORK = "snntorch"

# factory name in snntorch.surrogate -> (snnrobust kind, name of the closure's parameter)
_SURROGATES = {"atan": ("atan", "alpha"), "fast_sigmoid": ("fast-sigmoid", "slope"),
               "sigmoid": ("sigmoid", "slope"), "straight_through_estimator": ("straight-through", None)}


def _snntorch():
    require_version(FRAMEWORK)
    import snntorch

    return snntorch


class _SwappedSpike:
    """What the adapter puts in ``spike_grad``: snnTorch's strict comparison forward, the
    snnrobust surrogate's derivative backward."""

    def __init__(self, surrogate: Surrogate) -> None:
        self.surrogate = surrogate

    def __call__(self, x):
        return heaviside(x, self.surrogate, strict=True)


def translate(fn: Any, where: str) -> NativeSurrogate:
    """An snnTorch ``spike_grad`` closure as a :class:`NativeSurrogate` holding it."""
    if isinstance(fn, _SwappedSpike):
        sg = fn.surrogate
        return NativeSurrogate(sg.kind, sg.param, sg.scale, native=fn)
    qual = getattr(fn, "__qualname__", type(fn).__name__)
    factory = qual.split(".<locals>")[0] if ".<locals>." in qual else None
    known = _SURROGATES.get(factory) if getattr(fn, "__module__", "") == "snntorch.surrogate" else None
    if known is None:
        raise ConfigError(f"unsupported snnTorch spike_grad {qual} on {where}; supported: "
                          f"{', '.join('surrogate.' + k + '()' for k in _SURROGATES)}")
    kind, pname = known
    if pname is None:
        return NativeSurrogate(kind, None, 1.0, native=fn)
    value = inspect.getclosurevars(fn).nonlocals.get(pname)
    if not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"unsupported snnTorch spike_grad {qual} on {where}: {pname}={value!r} is not a positive "
                          f"number")
    return NativeSurrogate(kind, float(value), 1.0, native=fn)


class SnnTorchNeuron(ForeignNeuron):
    """Adapter for one snnTorch ``Leaky`` neuron: surrogate swap only (see the module docstring)."""

    framework = "snnTorch"

    def __init__(self, target: nn.Module, path: str) -> None:
        super().__init__(target, path)
        self.layer_estimators = ("snnTorch neurons run one time step per call, and this estimator needs the "
                                 "layer's whole sequence [T, B, ...]")

    def _read_native(self) -> NativeSurrogate:
        return translate(self.target.spike_grad, f"{type(self.target).__name__} ({self.path})")

    def _install_surrogate(self, surrogate: Surrogate) -> None:
        self.target.spike_grad = _SwappedSpike(surrogate)

    def _restore_surrogate(self, native: Any) -> None:
        self.target.spike_grad = native

    @property  # type: ignore[override]
    def threshold(self) -> float:
        return float(self.target.threshold)


def adapters(model: nn.Module) -> list[SnnTorchNeuron]:
    """One adapter per snnTorch neuron; any neuron type but ``Leaky`` is a one-line error."""
    snntorch = _snntorch()
    out = []
    for name, m in model.named_modules():
        if isinstance(m, snntorch.SpikingNeuron):
            path = name or "<model>"
            if not isinstance(m, snntorch.Leaky):
                raise ConfigError(f"unsupported snnTorch neuron type {type(m).__name__} ({path}); snnrobust "
                                  f"supports Leaky")
            out.append(SnnTorchNeuron(m, path))
    return out


def reset(model: nn.Module) -> None:
    """Clear the membrane of every snnTorch ``Leaky`` of ``model`` (and no other model's). The
    buffer goes back to the empty tensor a fresh ``Leaky`` holds, which its forward replaces by
    zeros of the input's shape — the same as ``reset_mem()`` (zeros of the last shape), but the
    buffer keeps the shape it had before the evaluation, so code that saves and restores
    buffers (the sparsity analysis) finds it unchanged. Runs before every forward pass, so it
    skips the version check (done once by ``wrap``)."""
    from snntorch import Leaky

    for m in model.modules():
        if isinstance(m, Leaky):
            m.mem = m.mem.new_zeros(0)
