"""State and attacker-choice helpers for spiking models.

- :func:`reset_states` is *the* one function that clears every stateful module; it runs
  before every forward pass.
- :func:`use_surrogate`, :func:`use_estimator` and :func:`use_encoder_smoothing` apply an
  attacker's gradient choice to a trained model for the duration of a ``with`` block and
  restore the model afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

from torch import nn

from .neurons import Estimator, SpikingNeuron
from .surrogates import Surrogate


def reset_states(model: nn.Module) -> None:
    """Clear the state of every module that has a ``reset_state()`` method (neurons,
    stateful encoders, estimator buffers). Call before every forward pass."""
    for m in model.modules():
        fn = getattr(m, "reset_state", None)
        if callable(fn):
            fn()


def spiking_neurons(model: nn.Module) -> list[SpikingNeuron]:
    """All spiking neurons of ``model`` in network (registration) order."""
    return [m for m in model.modules() if isinstance(m, SpikingNeuron)]


@contextmanager
def _attribute_set(objects: list, name: str, value: Any) -> Iterator[list]:
    """Set attribute ``name`` of every object to ``value`` for a ``with`` block; each object's
    own value comes back on exit, also after an exception. Yields ``objects``."""
    saved = [getattr(o, name) for o in objects]
    try:
        for o in objects:
            setattr(o, name, value)
        yield objects
    finally:
        for o, v in zip(objects, saved):
            setattr(o, name, v)


@contextmanager
def use_surrogate(model: nn.Module, surrogate: "Surrogate | str | dict") -> Iterator[nn.Module]:
    """Temporarily give every spiking neuron of ``model`` the surrogate ``surrogate``
    (e.g. ``"triangle:0.5"``). Weights are untouched; the old surrogates come back on exit."""
    with _attribute_set(spiking_neurons(model), "surrogate", Surrogate.parse(surrogate)):
        yield model


@contextmanager
def use_estimator(model: nn.Module, estimator: Optional[Estimator]) -> Iterator[nn.Module]:
    """Temporarily replace the backward of every spiking layer by ``estimator``
    (a callable ``(neuron, x_seq) -> spikes`` whose forward equals the neuron's)."""
    with _attribute_set(spiking_neurons(model), "estimator", estimator):
        yield model


def smoothable_encoders(model: nn.Module) -> list[nn.Module]:
    """The encoders of ``model`` whose backward an attacker may smooth (phase coding)."""
    from .encoders import Encoder

    return [m for m in model.modules() if isinstance(m, Encoder) and m.smoothable]


@contextmanager
def use_encoder_smoothing(model: nn.Module, width: Optional[float]) -> Iterator[nn.Module]:
    """Temporarily give every smoothable encoder of ``model`` the smoothed backward of window
    half-width ``width`` (pixels; None: its own backward); restored on exit."""
    with _attribute_set(smoothable_encoders(model), "smooth_width", width):
        yield model


@contextmanager
def record_membranes(model: nn.Module) -> Iterator[list[SpikingNeuron]]:
    """Keep each neuron's pre-spike membrane [T, B, ...] in ``neuron.membrane`` while active."""
    with _attribute_set(spiking_neurons(model), "record_membrane", True) as neurons:
        yield neurons


@contextmanager
def seeded_encoders(model: nn.Module, seed: int) -> Iterator[nn.Module]:
    """Draw the stochastic encoders' spikes (Poisson) from a fresh generator seeded by
    ``seed`` for a ``with`` block: an evaluation batch seeded by its own position then draws
    the same spikes whichever process runs it and in whatever order. The encoders' own seeds
    and generators come back on exit."""
    from .encoders import Encoder

    encs = [m for m in model.modules() if isinstance(m, Encoder) and callable(getattr(m, "manual_seed", None))]
    saved = [(e._seed, e.generator) for e in encs]
    try:
        for e in encs:
            e.manual_seed(seed)
        yield model
    finally:
        for e, (s, g) in zip(encs, saved):
            e._seed, e.generator = s, g


@contextmanager
def keyed_draws(model: nn.Module, seed: int) -> Iterator[Optional[Any]]:
    """Key the stochastic encoders' draws per sample for a ``with`` block: yields the
    :class:`~snnrobust.keyed_random.PassDraws` they share (declare a batch's samples with its
    ``rows(keys)``), or None when ``model`` has no encoder that supports it. The previous
    state comes back on exit, so scopes nest."""
    from ..keyed_random import PassDraws
    from .encoders import Encoder

    encs = [m for m in model.modules() if isinstance(m, Encoder) and hasattr(m, "pass_draws")]
    if not encs:
        yield None
        return
    draws = PassDraws(seed)
    saved = [e.pass_draws for e in encs]
    try:
        for e in encs:
            e.pass_draws = draws
        yield draws
    finally:
        for e, d in zip(encs, saved):
            e.pass_draws = d


@contextmanager
def fused_bptt(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Back-propagate through every spiking neuron of ``model`` with the fused function
    (:mod:`snnrobust.spiking.fused`: the same gradients, less memory, slower on CPU) instead of
    the reference loop, for a ``with`` block; ``on=False`` forces the reference loop."""
    with _attribute_set(spiking_neurons(model), "fused", bool(on)):
        yield model


@contextmanager
def channels_last(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Run every merged-batch layer of ``model`` (conv, BatchNorm, pooling) on channels-last
    image batches for a ``with`` block (``on=False``: a no-op): often faster on CPUs, the same
    values up to the convolutions' float rounding. The layers' own setting comes back on exit. Use it as
    a ``with`` block: entered by hand (``channels_last(m).__enter__()``) without keeping the
    context, it is undone as soon as the context is garbage-collected."""
    from .layers import SeqToBatch

    layers = [m for m in model.modules() if isinstance(m, SeqToBatch)] if on else []
    with _attribute_set(layers, "channels_last", True):
        yield model
