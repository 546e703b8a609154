"""``sr``: the gradient-sparsity regularizer of Liu et al. 2024 ("Enhancing adversarial
robustness in SNNs with sparse gradients").

With f(x) the two-way softmax of the true logit against the largest other one,
f = softmax([z_y, z_o])_0 = sigmoid(z_y - z_o), the loss is

    CE(x, y) + lambda * mean over the batch of ((f(x + h * sign grad_x f) - f(x)) / h)^2,  h = 0.01

and to first order f(x + h sign g) - f(x) = h * g . sign g = h ||g||_1, so the term is a
finite-difference estimate of ||grad_x f||_1^2 — the first-order gain of an L-inf attacker —
that needs no second derivatives: the sign direction is computed and then held fixed
(detached), and only the two forward passes are differentiated. The competing class o is
chosen on the clean logits and kept for x + h d, so the difference is of one smooth function.
The perturbed point is clamped into the encoder's pixel range: a pixel at a bound moves only
inward, i.e. the term measures the gradient along the directions an attacker can use.
The input gradient is the model's own (its training surrogate; encoders' straight-through
backward). The perturbed pass runs in train mode like the clean one but leaves BatchNorm's
running statistics alone (:func:`~snnrobust.defenses.base.frozen_bn_stats`).

Defaults: h 0.01 (the paper's); lambda 0.002 is ours — Liu et al. 2024 set it per run on
the command line. Cost: one input gradient and one more forward/backward, about 2-3x plain BPTT.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import Defense, check_number, frozen_bn_stats, input_bounds


def two_way_softmax(logits: torch.Tensor, y: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """[B]: softmax of the true logit against logit ``other`` = sigmoid(z_y - z_other)."""
    z = logits.float()
    return torch.sigmoid(z.gather(1, y[:, None]).squeeze(1) - z.gather(1, other[:, None]).squeeze(1))


def largest_other(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[B] long: the class with the largest logit other than ``y``."""
    return logits.detach().float().scatter(1, y[:, None], float("-inf")).argmax(1)


def sr_difference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, h: float = 0.01,
                  bounds: Optional[tuple[float, float]] = None,
                  logits: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The finite difference (f(x + h sign grad f) - f(x)) / h per sample, [B] with a graph
    to the weights, and the clean logits [B, K]. ``x`` [B, C, H, W] must require grad when
    ``logits`` (its forward, to be reused) is given; otherwise the clean pass is made here."""
    if logits is None:
        x = x.detach().requires_grad_(True)
        logits = model(x)
    other = largest_other(logits, y)
    f0 = two_way_softmax(logits, y, other)
    (g,) = torch.autograd.grad(f0.sum(), x, retain_graph=True)
    lo, hi = bounds if bounds is not None else input_bounds(model)
    x2 = (x.detach() + h * g.sign()).clamp(lo, hi)
    with frozen_bn_stats(model):
        f1 = two_way_softmax(model(x2), y, other)
    return (f1 - f0) / h, logits


class SR(Defense):
    name = "sr"
    description = "gradient-sparsity regularizer, Liu et al. 2024"
    options: dict[str, Any] = {"lambda": 0.002, "h": 0.01}

    def _validate(self, opts: dict[str, Any]) -> dict[str, Any]:
        opts["lambda"] = check_number(self.name, "lambda", opts["lambda"], 0.0, low_open=False)
        opts["h"] = check_number(self.name, "h", opts["h"], 0.0, 1.0)
        return opts

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        ce = F.cross_entropy(logits.float(), y)
        diff, _ = sr_difference(model, x, y, float(self.settings["h"]), logits=logits)
        term = diff.pow(2).mean()
        self._record("sr_term", float(term.detach()))
        return ce + float(self.settings["lambda"]) * term, logits
