"""Memory-lean BPTT over time: the backbone runs on segments of ``length`` timesteps, each
checkpointed (``torch.utils.checkpoint``), so the backward keeps only the segment boundaries —
the encoded input and every neuron's membrane there — and recomputes one segment's activations
at a time. Peak memory is then about (T / length) membrane states plus one segment's
activations, instead of all T steps' activations: with length ~ sqrt(T) it grows like sqrt(T).
The price is a second forward of every segment (BENCHMARKS.md measures both).

Exact because nothing in a snnrobust backbone mixes timesteps except the neurons' membranes,
which are carried from segment to segment (and differentiated through), with two exceptions
that are refused with a one-line error:

- BatchNorm in training mode normalizes with the statistics of all T * B samples, which a
  segment does not see. Attacks run the model in eval mode, so they can always use segments;
  training can for models without BatchNorm in training mode (e.g. hybrid SNN-BP fine-tuning,
  whose BatchNorm is folded into the weights), and otherwise uses ``recompute_blocks``.
- a neuron recording its membrane trace (analysis) would keep only the last segment's.

Only passes that record gradients are segmented; scoring passes run all T steps at once, and
so do passes under a gradient estimator whose backward mixes timesteps (RGA's and BPTR's time
averages, HART's averaged gradient, PDSG's spread over all steps, ASSG's per-step state:
``LayerEstimator.time_local`` False), which a segment cannot see: their memory is the
unsegmented one.
The per-step outputs, and so the logits, are the unsegmented ones (up to float rounding, if the
convolutions' arithmetic changes with the batch of T * B samples). A stateful attack-time
estimator (ASSG) would see each recomputation as a second pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..spiking.functional import spiking_neurons


def check_length(length: object, what: str = "time_segment") -> Optional[int]:
    """None (off) or a positive int, else a one-line ConfigError."""
    if length is None:
        return None
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ConfigError(f"{what} must be a positive number of timesteps (e.g. 4), got {length!r}")
    return length


@contextmanager
def time_segments(model: nn.Module, length: Optional[int]) -> Iterator[nn.Module]:
    """Back-propagate through ``model`` (a snnrobust SpikingClassifier) in checkpointed segments
    of ``length`` timesteps for a ``with`` block; ``None`` is a no-op. The setting before comes back."""
    length = check_length(length)
    if length is None:
        yield model
        return
    if not hasattr(model, "time_segment"):
        raise ConfigError(f"time segments need a snnrobust model (SpikingClassifier); {type(model).__name__} "
                          "runs its own time loop; run it without time segments")
    before = model.time_segment
    model.time_segment = length
    try:
        yield model
    finally:
        model.time_segment = before


def segmentable(backbone: nn.Module) -> bool:
    """False while a gradient estimator that mixes timesteps hooks one of the backbone's neurons."""
    return all(n.estimator is None or getattr(n.estimator, "time_local", False) for n in spiking_neurons(backbone))


def run_in_segments(backbone: nn.Module, s: torch.Tensor, length: int) -> torch.Tensor:
    """The backbone's per-step outputs [T, B, ...] for input [T, B, C, H, W], run in checkpointed
    segments of ``length`` steps from the neurons' current state (at rest after a reset)."""
    if any(isinstance(m, _BatchNorm) and m.training for m in backbone.modules()):
        raise ConfigError("time segments need BatchNorm in eval mode: training-mode BatchNorm normalizes over all T "
                          "steps at once; train this model with recompute_blocks instead, or attack it (eval mode)")
    neurons = spiking_neurons(backbone)
    if any(n.record_membrane for n in neurons):
        raise ConfigError("time segments cannot record membrane traces (a segment would keep only its own); "
                          "record them without time segments")
    outs = []
    state: list = [n.v for n in neurons]
    for chunk in s.split(length):
        out, *state = checkpoint(_segment_fn(backbone, neurons), chunk, *state, use_reentrant=False,
                                 preserve_rng_state=True)
        outs.append(out)
    for n, v in zip(neurons, state):
        n.v = v
    return torch.cat(outs)


def _segment_fn(backbone: nn.Module, neurons: list):
    calls = 0

    def segment(chunk: torch.Tensor, *v_in: Optional[torch.Tensor]) -> tuple:
        nonlocal calls
        calls += 1
        kept = [n.v for n in neurons]  # the recomputation in backward must not disturb the state
        for n, v in zip(neurons, v_in):
            n.v = v
        try:
            out = backbone(chunk)
            return (out, *[n.v for n in neurons])
        finally:
            if calls > 1:
                for n, v in zip(neurons, kept):
                    n.v = v

    return segment
