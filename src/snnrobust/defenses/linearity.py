"""Local-linearity penalty for adversarial training (after Qin et al. 2019, "Adversarial
robustness through local linearization"), used by ``pgd-at``'s ``linearity`` option.

With l(x) the per-sample CE loss, g = grad_x l(x) at the clean image (through the model's own
surrogate, kept in the graph: the penalty trains the gradient itself), and perturbations delta
inside the eps ball, the gap

    gap(delta) = | l(x + delta) - l(x) - delta . g |

is how far the loss at x + delta is from what the gradient at x predicts. The penalty is the
mean gap over the PGD perturbation and ``draws`` random vertices of the L-inf ball (each pixel
moved by +-eps, clipped into the pixel range).

Why: on phase-coded SEW-ResNets trained with PGD alone, Square finds points at near-random
vertices of the ball that no gradient attack finds (the gradient at x is uncorrelated with
them; BENCHMARKS.md, PGD-AT models). Qin et al. show that a small gap makes gradient attacks
find what exists, so the robust accuracy they report is trustworthy; fitting g to the loss
changes at random vertices is the cheap form of their inner maximization.

Cost: the clean pass runs through the reference neuron loop (the fused function and the CPU
kernel have no double backward) with a graph for its input gradient, plus one forward pass per
draw, and the backward of all of them: about 2-4 plain training steps more per batch.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..spiking.functional import fused_bptt
from .base import frozen_bn_stats


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[B] CE in at least float32 (half-precision logits under AMP are promoted; float64 stays)."""
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), y, reduction="none")


def linearity_gaps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, draws: int,
                   bounds: tuple[float, float], gen: Optional[torch.Generator],
                   z: Optional[torch.Tensor] = None, z_loss: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gaps [B, draws (+1)] with a graph to the weights (see the module docstring).

    ``x`` [B, C, H, W]: clean images in ``bounds``; ``y`` [B] labels; ``draws`` random L-inf
    vertices of radius ``eps`` (pixels) from ``gen``. ``z`` (the crafted images) and ``z_loss``
    (their per-sample CE, with its graph, from the training pass) add the PGD point's gap as
    the last column. The extra passes leave BatchNorm's running statistics alone."""
    lo, hi = bounds
    x = x.detach().requires_grad_(True)
    with frozen_bn_stats(model):
        with fused_bptt(model, False):  # double backward needs the reference loop
            l0 = per_sample_ce(model(x), y)
        (g,) = torch.autograd.grad(l0.sum(), x, create_graph=True)
        gaps = []
        for _ in range(draws):
            sign = torch.randint(0, 2, x.shape, generator=gen).to(x.device, x.dtype) * 2 - 1
            delta = ((x.detach() + eps * sign).clamp(lo, hi) - x.detach())
            l1 = per_sample_ce(model(x.detach() + delta), y)
            gaps.append(l1 - l0 - (delta * g).flatten(1).sum(1))
    if z is not None and z_loss is not None:
        delta = (z.detach() - x.detach())
        gaps.append(z_loss - l0 - (delta * g).flatten(1).sum(1))
    return torch.stack(gaps, 1).abs()
