"""Stateless layers applied to multi-step tensors by merging time into the batch.

A conv/BN/pool/linear layer has no memory across time, so it runs once on the merged
[T*B, ...] batch (one large call instead of T small ones) and the result is split back
into [T, B, ...]. BatchNorm statistics are therefore taken over T*B samples.
"""

from __future__ import annotations

import torch
from torch import nn


class SeqToBatch(nn.Module):
    """Apply ``module`` to [T, B, ...] by flattening to [T*B, ...] and back.

    ``channels_last`` (set by :func:`~snnrobust.spiking.functional.channels_last`): image
    batches [T*B, C, H, W] enter the module in channels-last memory layout, which CPU
    convolution and pooling kernels often run faster on (BENCHMARKS.md: 0.88x the time of the
    demo's reliable suite, slower on single small batches); the values are the same up to the
    convolutions' float rounding, and the layout flows on through the neurons."""

    channels_last: bool = False

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        T, B = x_seq.shape[:2]
        x = x_seq.flatten(0, 1)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op when it already is
        y = self.module(x)
        return y.reshape(T, B, *y.shape[1:])


class Connect(nn.Module):
    """SEW residual connect function g(a, s) of block output ``a`` and shortcut ``s``
    (both [T, B, ...]): ADD = a + s, AND = a * s, IAND = (1 - a) * s. A module, so that
    gradient analysis sees the residual join as an operation of its own."""

    KINDS = ("ADD", "AND", "IAND")

    def __init__(self, kind: str = "ADD") -> None:
        super().__init__()
        kind = kind.upper()
        if kind not in self.KINDS:
            from ..errors import ConfigError

            raise ConfigError(f"connect must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.kind = kind

    def forward(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.kind == "ADD":
            return a + s
        if self.kind == "AND":
            return a * s
        return (1 - a) * s

    def extra_repr(self) -> str:
        return self.kind


class Add(nn.Module):
    """Plain residual addition (Spiking-ResNet, WRN), a module for the same reason."""

    def forward(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return a + s


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose passes without autograd take the maximum of the window's shifted
    slices (:func:`window_max`; exactly the same values: a maximum has no rounding), faster on
    this project's CPUs for contiguous [N, C, H, W] batches than the library kernel, which also
    computes the indices its backward would need (BENCHMARKS.md). With autograd, channels-last
    input, or options the slices do not cover (dilation, ceil_mode, returned indices), it is the
    library layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() != 4 or (torch.is_grad_enabled() and x.requires_grad) or self.return_indices
                or self.ceil_mode or self.dilation not in (1, (1, 1))
                or x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()):
            return super().forward(x)
        return window_max(x, _pair(self.kernel_size), _pair(self.stride or self.kernel_size), _pair(self.padding))


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def window_max(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]) -> torch.Tensor:
    """Max pooling of x [N, C, H, W] (window k, stride s, padding p with -inf), separably: the
    maximum of k[0] strided row slices, then of k[1] strided column slices of that. NaN
    propagates as in the library kernel."""
    H, W = x.shape[-2:]
    ho, wo = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    xp = torch.nn.functional.pad(x, (p[1], p[1], p[0], p[0]), value=float("-inf")) if any(p) else x
    rows = _slice_max([xp[..., i:i + s[0] * (ho - 1) + 1:s[0], :] for i in range(k[0])])
    return _slice_max([rows[..., j:j + s[1] * (wo - 1) + 1:s[1]] for j in range(k[1])])


def _slice_max(slices: list[torch.Tensor]) -> torch.Tensor:
    out = slices[0].clone()
    for t in slices[1:]:
        torch.maximum(out, t, out=out)
    return out


def seq_conv(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None,
             bias: bool = False) -> SeqToBatch:
    return SeqToBatch(nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, bias=bias))


def seq_bn(c: int) -> SeqToBatch:
    return SeqToBatch(nn.BatchNorm2d(c))


def seq_pool(kind: str, k: int, stride: int, padding: int = 0) -> SeqToBatch:
    if kind == "max":
        return SeqToBatch(MaxPool2d(k, stride, padding))
    if kind == "avg":
        return SeqToBatch(nn.AvgPool2d(k, stride, padding))
    from ..errors import ConfigError

    raise ConfigError(f"pooling must be 'max' or 'avg', got {kind!r}")


def seq_linear(cin: int, cout: int, bias: bool = True) -> SeqToBatch:
    return SeqToBatch(nn.Linear(cin, cout, bias=bias))
