"""Memory-lean BPTT by recomputation: each residual block keeps only its input [T, B, C, H, W]
for the backward pass and runs its forward again there (``torch.utils.checkpoint``), instead of
keeping every conv, BatchNorm and neuron tensor of all T steps. Training memory then holds one
tensor per block plus one block's internals at a time; the price is a second forward of every
block per step (BENCHMARKS.md measures both).

The gradients are the plain ones: the recomputed forward is the same function of the same input
(the block's neurons start again from the membrane they held before the first forward, and the
RNG state is restored). The side effects of a second forward are undone: BatchNorm in training
mode would count the batch twice in its running statistics, and the neurons would keep the
recomputation's state, so both are put back. It only applies while gradients are recorded
(evaluation and attacks without a graph run as usual). A stateful attack-time estimator (ASSG)
would see the recomputation as a second pass: this is a training option.

Units are the modules whose class sets ``recompute_unit = True`` (the ResNet and WRN blocks).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ..spiking.functional import spiking_neurons


def recompute_units(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that :func:`recompute_blocks` recomputes."""
    return [m for m in model.modules() if getattr(type(m), "recompute_unit", False)]


@contextmanager
def _running_stats_kept(module: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics (and batch counts) of ``module`` as they were on entry."""
    saved = [(m, [None if b is None else b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)])
             for m in module.modules() if isinstance(m, _BatchNorm) and m.training]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, bufs in saved:
                for buf, val in zip((m.running_mean, m.running_var, m.num_batches_tracked), bufs):
                    if buf is not None and val is not None:
                        buf.copy_(val)


def _recomputed(block: nn.Module, forward: Callable[..., Any]) -> Callable[..., Any]:
    neurons = spiking_neurons(block)

    def run(x: torch.Tensor) -> Any:
        if not torch.is_grad_enabled():
            return forward(x)
        calls = 0
        start = [n.v for n in neurons]  # the neurons' state before the block ran (at rest: None)

        def fn(inp: torch.Tensor) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                return forward(inp)
            # the recomputation in backward: from the same neuron state, BN statistics kept
            after = [n.v for n in neurons]
            for n, v in zip(neurons, start):
                n.v = v
            try:
                with _running_stats_kept(block):
                    return forward(inp)
            finally:
                for n, v in zip(neurons, after):
                    n.v = v

        return checkpoint(fn, x, use_reentrant=False, preserve_rng_state=True)

    return run


@contextmanager
def recompute_blocks(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Recompute every residual block of ``model`` in backward instead of keeping its
    activations, for a ``with`` block (``on=False``: a no-op). Restores the blocks on exit."""
    units = recompute_units(model) if on else []
    try:
        for u in units:
            u.forward = _recomputed(u, type(u).forward.__get__(u))  # instance attribute shadows the method
        yield model
    finally:
        for u in units:
            u.__dict__.pop("forward", None)
