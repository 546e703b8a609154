"""Random draws keyed per sample, so that what an attack draws for a sample does not depend on
its batch-mates, the batch size, or which process evaluates it.

Row i of a :class:`SampleDraws` draw comes from a CPU generator seeded by
``mix(seed, key_i, stream)``: ``key_i`` is the sample's index in the whole evaluation set,
``stream`` tells apart the draws one sample gets (restart r, noise draw r). The numbers are
drawn on the CPU, so they are the same on every device.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix(*parts: Any) -> int:
    """A 63-bit seed from integers and strings, the same in every process and on every
    platform (unlike ``hash()``); nearby inputs give unrelated seeds."""
    h = 0
    for p in parts:
        v = int(p) if isinstance(p, (int, bool)) else zlib.crc32(str(p).encode())
        h = _splitmix64(h ^ (v & _MASK64))
    return h >> 1


class SampleDraws:
    """Per-sample random draws: ``keys`` [B] (global sample indices) and a ``stream`` number.

    ``draw(shape, kind)`` returns a float32 CPU tensor of ``shape`` (batch first, shape[0] == B)
    whose row i depends only on (seed, keys[i], stream) — never on the other rows."""

    def __init__(self, seed: int, keys: "Sequence[int] | torch.Tensor", stream: Any = 0) -> None:
        self.seed = int(seed)
        self.keys = [int(k) for k in (keys.tolist() if isinstance(keys, torch.Tensor) else keys)]
        self.stream = stream
        self._gen = torch.Generator(device="cpu")

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, idx: torch.Tensor, stream: Any = None) -> "SampleDraws":
        """The draws of rows ``idx`` (positions in ``keys``), optionally on another stream."""
        return SampleDraws(self.seed, [self.keys[i] for i in idx.tolist()],
                           self.stream if stream is None else stream)

    def draw(self, shape: Sequence[int], kind: str = "uniform") -> torch.Tensor:
        """[B, ...] uniform in [0, 1) (``kind="uniform"``) or standard normal (``"normal"``)."""
        shape = tuple(int(s) for s in shape)
        if shape[0] != len(self.keys):
            raise ValueError(f"draw of {shape[0]} rows for {len(self.keys)} sample keys")
        out = torch.empty(shape, dtype=torch.float32)
        fn = torch.rand if kind == "uniform" else torch.randn
        for i, k in enumerate(self.keys):
            self._gen.manual_seed(mix(self.seed, k, self.stream))
            out[i] = fn(shape[1:], generator=self._gen, dtype=torch.float32)
        return out
