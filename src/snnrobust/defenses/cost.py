"""What a defense costs: the time of one plain training step, measured on a copy of the
model, against which the trainer states each defended epoch's extra cost.

On a CPU both are CPU time of this process (``time.process_time``), not wall time: on a
shared machine the wall time of one step depends on what else runs at that moment, so a
plain step timed once and an epoch timed later would not compare. On CUDA, wall time after a
synchronize.

The copy (``copy.deepcopy``: weights, BatchNorm statistics and encoder generators are its
own) takes plain steps on the first batch with a throwaway optimizer of the same kind, so the
real model, its optimizer and every random stream of the run are untouched and ``--resume``
stays exact. One warm-up step, then the median of ``repeats`` timed ones.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def cost_clock(device: torch.device) -> Callable[[], float]:
    """The clock costs are measured with (see the module docstring): seconds, any origin."""
    if device.type == "cuda":
        def wall() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return wall
    return time.process_time


def plain_step_seconds(model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                       x: torch.Tensor, y: torch.Tensor, repeats: int = 3,
                       clock: Callable[[], float] = time.process_time) -> float:
    """Median time (s, by ``clock``) of one plain CE training step (forward, backward,
    optimizer step) on images ``x`` [B, C, H, W], labels ``y`` [B], on a copy of ``model``
    in train mode."""
    probe = copy.deepcopy(model).train()
    opt = make_optimizer(probe)
    times = []
    for i in range(repeats + 1):
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(probe(x).float(), y).backward()
        opt.step()
        if i > 0:  # the first step pays one-time allocation costs
            times.append(clock() - t0)
    return statistics.median(times)


def cost_line(name: str, train_seconds: float, n_batches: int, plain_step: float, method: str = "bptt",
              cpu: bool = True) -> str:
    """E.g. ``defense fast-at: 61.2 s CPU time of training = 2.10x plain BPTT (est. 29.1 s from
    a timed plain step)``."""
    plain = n_batches * plain_step
    what = "plain BPTT" if method in ("bptt", "hybrid") else "plain training"
    ratio = train_seconds / plain if plain > 0 else float("nan")
    return (f"defense {name}: {train_seconds:.1f} s {'CPU time' if cpu else 'GPU wall time'} of training = "
            f"{ratio:.2f}x {what} (est. {plain:.1f} s from a timed plain step)")
