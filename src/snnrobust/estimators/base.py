"""What every gradient estimator shares: the estimator object (applied to a model by a
context manager that restores it), the layer-level estimator interface, and the autograd
building blocks around the neuron's own time loop (:meth:`SpikingNeuron.run`)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.functional import spiking_neurons, use_estimator
from ..spiking.neurons import SpikingNeuron


# ---------------------------------------------------------------------------------------
# building blocks. The dynamics (charge, fire, reset) live only in the neuron's own loop,
# SpikingNeuron.run; an estimator states what differs: the spike function's backward, a
# detached recurrence, or a whole replaced backward around the exact (graph-free) forward.
# ---------------------------------------------------------------------------------------
def exact_forward(neuron: SpikingNeuron, x_seq: torch.Tensor,
                  keep_state: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The neuron's own loop without a graph: (spikes, pre-spike membrane), both [T, B, ...].
    With ``keep_state`` the neuron's ``v`` (and ``membrane`` when recording) are updated as by
    its forward."""
    with torch.no_grad():
        spikes, membrane = neuron.run(x_seq, keep_state=keep_state, record=True)
    assert membrane is not None
    return spikes, membrane


class _TimeAveragedGrad(torch.autograd.Function):
    """Identity forward on spikes [T, B, ...]; backward replaces each step's incoming gradient
    by its mean over the T steps (HART's time-averaged gradient)."""

    @staticmethod
    def forward(ctx, spikes):  # type: ignore[override]
        return spikes.view_as(spikes)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g.mean(0, keepdim=True).expand_as(g)


class _ReplacedBackward(torch.autograd.Function):
    """Forward: ``run(x_seq) -> (spikes, vjp)`` computed without a graph; backward:
    ``vjp(grad_spikes) -> grad_x_seq``. Used by the layer-level estimators."""

    @staticmethod
    def forward(ctx, x_seq, run):  # type: ignore[override]
        spikes, vjp = run(x_seq)
        ctx.vjp = vjp
        return spikes

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        vjp = ctx.vjp
        ctx.vjp = None  # free what the closure holds
        return vjp(g), None


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample [B] tensor as [B, 1, ...] broadcastable to one step [B, ...]."""
    return v.view(-1, *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------------------------
# the estimator objects
# ---------------------------------------------------------------------------------------
class GradientEstimator:
    """Base class. Subclasses set ``name``, ``description``, ``positional`` (the order of
    parameters in a spec string) and implement :meth:`applied`."""

    name: str = ""
    description: str = ""
    positional: tuple[str, ...] = ()

    def __init__(self, **params: Any) -> None:
        self.params: dict = params

    # -- description ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "params": dict(self.params), "label": self.label()}

    def label(self) -> str:
        shown = {k: v for k, v in self.params.items() if v is not None}
        if not shown:
            return self.name.upper()
        inner = ",".join(f"{_GREEK.get(k, k)}={_fmt_label(v)}" for k, v in shown.items())
        return f"{self.name.upper()}[{inner}]"

    def spec(self) -> str:
        """A string that :func:`get_estimator` parses back to an equal estimator."""
        import inspect

        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        vals = [self.params[k] for k in self.positional]
        # drop trailing fields left at their defaults ("assg:0.4:1" -> "assg")
        while vals and (vals[-1] is None or vals[-1] == defaults.get(self.positional[len(vals) - 1])):
            vals.pop()
        if any(v is None for v in vals):  # a gap: no positional form
            return self.name
        return ":".join([self.name] + [_fmt(v) for v in vals])

    def __repr__(self) -> str:
        return f"<GradientEstimator {self.label()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GradientEstimator) and self.to_dict() == other.to_dict()

    __hash__ = object.__hash__

    # -- use -----------------------------------------------------------------------------
    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Apply this estimator to every spiking neuron of ``model``; restore on exit."""
        raise NotImplementedError

    def reset(self) -> None:
        """Clear any state kept across forward passes (start of an attack run)."""


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _fmt_label(v: Any) -> str:
    """Floats keep a decimal point in labels (``γ=1.0``)."""
    text = _fmt(v)
    return text + ".0" if isinstance(v, float) and text.lstrip("-").isdigit() else text


_GREEK = {"gamma": "γ", "beta": "β", "tau": "τ"}




def require_neurons(model: nn.Module, spec: str) -> None:
    """A ConfigError when ``model`` has no spiking neuron snnrobust can see: an estimator that
    acts on neurons would then change nothing and attack with the model's own gradient under
    another name."""
    if not spiking_neurons(model):
        raise ConfigError(
            f"estimator {spec} acts on spiking neurons, but {type(model).__name__} has none snnrobust can see (an "
            "ANN, or a plain PyTorch SNN whose spike functions are opaque); use estimator bptt (the model's own "
            "gradient)")


class LayerEstimator(GradientEstimator):
    """An estimator that replaces each spiking layer's forward (``neuron.estimator``) by a
    call of this object: ``(neuron, x_seq [T, B, ...]) -> spikes`` with exact values."""

    #: whether the backward of step t needs only steps up to t and the membrane carried from
    #: before (so the layer can run in segments of time, :mod:`snnrobust.models.time_segments`);
    #: False for the estimators that average or normalize over all T steps (RGA, BPTR, HART, PDSG)
    #: or keep per-step state across passes (ASSG)
    time_local: bool = False

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        require_neurons(model, self.spec())
        with use_estimator(model, self):
            yield model

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError



def _num(what: str, v: Any, positive: bool = False, min_: Optional[float] = None) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {v!r}") from None
    if not math.isfinite(f) or (positive and not f > 0) or (min_ is not None and f < min_):
        bound = "> 0" if positive else f">= {min_:g}"
        raise ConfigError(f"{what} must be finite and {bound}, got {v!r}")
    return f
