"""Tiny models built to show one gradient-masking symptom each, and the data they classify.

Every model is a linear 4-class classifier on 8x8 one-channel images in [0, 1]: the logits are
``W (x - 0.5) / 2`` with W the rows 1..4 of a 64x64 Hadamard matrix (orthogonal +-1 templates).
What differs is the backward (or a quantized forward) and, for two of them, noise in the output.
The data put each image at ``0.5 + a_i * template[y_i]`` plus a little pixel noise, with a
per-image amplitude a_i in [0.03, 0.07], on the 1/255 grid of real 8-bit images. The linear
model's margin is then 64 a_i / 2 = 32 a_i (1 to 2.2) and an L-inf attack lowers it by at most
||t_y - t_c||_1 eps / 2 = 32 eps (FGSM is optimal), so at eps = 0.05 the images with
a_i > 0.05 are truly robust and the others are not.
"""

from __future__ import annotations

import torch
from torch import nn

SIDE = 8                # images are [1, SIDE, SIDE]
DIMS = SIDE * SIDE
CLASSES = 4
LOGIT_SCALE = 0.5       # margins of 1-2.2: the CE loss is far from saturated


def templates(k: int = CLASSES) -> torch.Tensor:
    """[k, DIMS] rows 1..k of the Sylvester-Hadamard matrix: +-1 entries, mutually orthogonal,
    each with as many +1 as -1 (so a template is orthogonal to a constant image too)."""
    h = torch.ones(1, 1)
    while h.shape[0] < DIMS:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[1:k + 1]


def data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [n, 1, SIDE, SIDE] on the 1/255 grid, y [n]) with balanced labels; see the module
    docstring for the amplitudes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    amp = 0.03 + 0.04 * torch.rand(n, 1, generator=g)
    x = 0.5 + amp * templates()[y] + 0.01 * (2 * torch.rand(n, DIMS, generator=g) - 1)
    x = torch.round(x.clamp(0, 1) * 255) / 255  # exactly on the grid: OnlyCleanGradient relies on it
    return x.view(n, 1, SIDE, SIDE), y


class Linear(nn.Module):
    """The well-behaved reference: exact gradients everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(DIMS, CLASSES, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(templates() * LOGIT_SCALE)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the linear layer sees, [B, DIMS]; subclasses change its backward or forward."""
        return x.flatten(1) - 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``fn(x)`` ([B, 1] factor)."""

    @staticmethod
    def forward(ctx, x, fn):  # type: ignore[override]
        ctx.factor = fn(x.detach())
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g * ctx.factor, None


class GradientZeroed(Linear):
    """Exact forward, input gradient exactly 0: a fully masked model."""

    def features(self, x):
        return _ScaleGrad.apply(x.flatten(1), lambda v: torch.zeros(v.shape[0], 1, dtype=v.dtype)) - 0.5


class SignQuantized(Linear):
    """Each pixel binarized at 0.5 before the linear layer (sign quantization): the forward is a
    step function, so autograd's input gradient is 0 everywhere, with no custom backward. An
    attack that could see the step boundaries would flip pixels 0.05 away."""

    def features(self, x):
        return torch.sign(x.flatten(1) - 0.5) * 0.05  # the data's typical amplitude: margins as Linear's


class ReversedGradient(Linear):
    """Exact forward, input gradient multiplied by -1: every gradient step lowers the loss."""

    def features(self, x):
        return _ScaleGrad.apply(x.flatten(1), lambda v: -torch.ones(v.shape[0], 1, dtype=v.dtype)) - 0.5


def _on_grid(v: torch.Tensor) -> torch.Tensor:
    """[B, 1]: 1 where every pixel of the sample lies on the 1/255 grid (a clean 8-bit image)."""
    k = v * 255
    return ((k - torch.round(k)).abs() < 1e-3).all(1, keepdim=True).to(v.dtype)


class OnlyCleanGradient(Linear):
    """Exact forward; the true gradient at clean (8-bit) images, its negative anywhere else.
    One signed step from the clean image (FGSM) goes the right way; PGD, which starts at a random
    point of the ball, is led away from the boundary at every step."""

    def features(self, x):
        return _ScaleGrad.apply(x.flatten(1), lambda v: 2 * _on_grid(v) - 1) - 0.5


class GradientOnlyNearData(Linear):
    """Exact forward; the true gradient while every pixel stays within ``radius`` of 0.5 (the
    data's neighbourhood), 0 once any pixel leaves it: attacks work at small eps and stall at
    large eps, where the model is anything but robust."""

    radius = 0.2

    def near(self, v: torch.Tensor) -> torch.Tensor:
        """[B, 1]: 1 while every pixel is within ``radius`` of 0.5."""
        return ((v - 0.5).abs() <= self.radius).all(1, keepdim=True).to(v.dtype)

    def features(self, x):
        return _ScaleGrad.apply(x.flatten(1), self.near) - 0.5


class NoisyLinear(Linear):
    """Linear plus Gaussian noise of std ``sigma`` on the logits at every forward: a stochastic
    model (scored by vote, attacked with EOT) whose gradients are still exact."""

    stochastic = True  # read by the Victim: votes and EOT apply

    def __init__(self, sigma: float = 0.5, masked: bool = False) -> None:
        super().__init__()
        self.sigma, self.masked = sigma, masked

    def features(self, x):
        if self.masked:  # no gradient reaches the input: the attack can only see the noise
            return _ScaleGrad.apply(x.flatten(1), lambda v: torch.zeros(v.shape[0], 1, dtype=v.dtype)) - 0.5
        return super().features(x)

    def forward(self, x):
        out = super().forward(x)
        return out + self.sigma * torch.randn_like(out)
