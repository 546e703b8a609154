"""Random draws keyed per sample, so that what an attack draws for a sample does not depend on
its batch-mates, the batch size, or which process evaluates it.

Row i of a :class:`SampleDraws` draw comes from a CPU generator seeded by
``mix(seed, key_i, stream)``: ``key_i`` is the sample's index in the whole evaluation set,
``stream`` tells apart the draws one sample gets (restart r, noise draw r). The numbers are
drawn on the CPU, so they are the same on every device. :class:`PassDraws` does the same for the
random forward passes of a stochastic model (a Poisson encoder's spikes): a sample's n-th pass
draws from (seed, key, n).
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


class PassDraws:
    """Keyed draws for the random forward passes of a stochastic model (Poisson encoders):
    the n-th pass that sample ``key`` goes through in a scope draws from
    ``mix(seed, key, n)``, so EOT and vote passes depend on the sample and how many passes it
    has had, never on which rows it shares them with.

    Whoever knows which samples a tensor's rows are declares them with :meth:`rows` (global
    sample indices, in row order) before passing it on; a pass whose batch does not match the
    declared rows is not keyed (counted in ``unkeyed``) and draws from the encoder's own
    generator as before."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.keys: "list[int] | None" = None
        self.count: dict[int, int] = {}
        self.unkeyed = 0
        self._gen = torch.Generator(device="cpu")

    def rows(self, keys: "Sequence[int] | torch.Tensor") -> "_Rows":
        """Context: the batches passed within it have rows ``keys``."""
        return _Rows(self, [int(k) for k in (keys.tolist() if isinstance(keys, torch.Tensor) else keys)])

    def uniform(self, B: int, shape: Sequence[int]) -> "torch.Tensor | None":
        """[B, *shape] float32 CPU uniforms in [0, 1), row i from sample keys[i]'s next pass;
        None (and counted) when the declared rows are not B."""
        if self.keys is None or len(self.keys) != B:
            self.unkeyed += 1
            return None
        out = torch.empty((B, *shape), dtype=torch.float32)
        for i, k in enumerate(self.keys):
            n = self.count.get(k, 0)
            self.count[k] = n + 1
            self._gen.manual_seed(mix(self.seed, k, n))
            out[i] = torch.rand(tuple(shape), generator=self._gen, dtype=torch.float32)
        return out


class _Rows:
    def __init__(self, draws: PassDraws, keys: list) -> None:
        self.draws, self.keys, self.saved = draws, keys, None

    def __enter__(self) -> PassDraws:
        self.saved, self.draws.keys = self.draws.keys, self.keys
        return self.draws

    def __exit__(self, *exc: Any) -> None:
        self.draws.keys = self.saved
