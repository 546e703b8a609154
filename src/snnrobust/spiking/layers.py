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
    convolution and pooling kernels run much faster on (BENCHMARKS.md); the values are the
    same up to the convolutions' float rounding, and the layout flows on through the neurons."""

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


def seq_conv(cin: int, cout: int, k: int, stride: int = 1, padding: int | None = None,
             bias: bool = False) -> SeqToBatch:
    return SeqToBatch(nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, bias=bias))


def seq_bn(c: int) -> SeqToBatch:
    return SeqToBatch(nn.BatchNorm2d(c))


def seq_pool(kind: str, k: int, stride: int, padding: int = 0) -> SeqToBatch:
    if kind == "max":
        return SeqToBatch(nn.MaxPool2d(k, stride, padding))
    if kind == "avg":
        return SeqToBatch(nn.AvgPool2d(k, stride, padding))
    from ..errors import ConfigError

    raise ConfigError(f"pooling must be 'max' or 'avg', got {kind!r}")


def seq_linear(cin: int, cout: int, bias: bool = True) -> SeqToBatch:
    return SeqToBatch(nn.Linear(cin, cout, bias=bias))
