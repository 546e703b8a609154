"""ASSG (Wang et al. 2025): per-neuron, per-step ATan sharpness adapted over attack iterations."""

from __future__ import annotations

import math
import weakref
from typing import Optional

import torch

from ..errors import ConfigError
from ..spiking.neurons import SpikingNeuron
from ..spiking.surrogates import Surrogate

from .base import LayerEstimator, _fmt_label, _num


class ASSG(LayerEstimator):
    name = "assg"
    description = "Wang et al. 2025: ATan surrogate with adaptive per-neuron, per-step sharpness (assg[:A[:r[:beta]]])"
    positional = ("A", "r", "beta")

    def __init__(self, A: float = 0.4, r: float = 1.0, beta: float = 0.9) -> None:
        A = _num("assg A", A, positive=True)
        if not A < 1:
            raise ConfigError(f"assg A (gradient mass fraction) must be in (0, 1), got {A}")
        beta = _num("assg beta", beta, min_=0.0)
        if not beta < 1:
            raise ConfigError(f"assg beta (EMA factor) must be in [0, 1), got {beta}")
        super().__init__(A=A, r=_num("assg r", r, min_=0.0), beta=beta)
        self.a = 2 * math.tan(math.pi * A / 2) / math.pi
        self._atan = Surrogate("atan")
        # per neuron: (M, D), each [T, B, ...], detached
        self._state: "weakref.WeakKeyDictionary[SpikingNeuron, tuple[torch.Tensor, torch.Tensor]]" = (
            weakref.WeakKeyDictionary()
        )

    def label(self) -> str:
        extra = "".join(f",{k}={_fmt_label(self.params[k])}"
                        for k, d in (("r", 1.0), ("beta", 0.9)) if self.params[k] != d)
        return f"ASSG[A={_fmt_label(self.params['A'])}{extra}]"

    def reset(self) -> None:
        self._state.clear()

    def state(self, neuron: SpikingNeuron) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(M, D) kept for ``neuron``, or None."""
        return self._state.get(neuron)

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        b, r = self.params["beta"], self.params["r"]
        prev = self._state.get(neuron)
        if prev is not None and (prev[0].shape != x_seq.shape or prev[0].device != x_seq.device):
            prev = None  # another batch: start the averages afresh
        Ms: list[torch.Tensor] = []
        Ds: list[torch.Tensor] = []

        def spike(xm: torch.Tensor, t: int) -> torch.Tensor:
            d = xm.detach().abs()
            if prev is None:
                m, dev = d, torch.zeros_like(d)
            else:
                m = b * prev[0][t] + (1 - b) * d
                dev = b * prev[1][t] + (1 - b) * (d - m).abs()
            Ms.append(m)
            Ds.append(dev)
            alpha = self.a / (m + r * dev + 1e-4)
            return self._atan.spike(xm, param=alpha)

        out, _ = neuron.run(x_seq, fire=spike)
        self._state[neuron] = (torch.stack(Ms), torch.stack(Ds))
        return out
