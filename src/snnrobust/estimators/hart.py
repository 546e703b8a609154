"""HART (Hao et al. 2024): time-averaged incoming gradient, detached membrane recurrence, triangle surrogate."""

from __future__ import annotations


import torch

from ..spiking.neurons import SpikingNeuron
from ..spiking.surrogates import Surrogate

from .base import _TimeAveragedGrad, LayerEstimator, _num


class HART(LayerEstimator):
    name = "hart"
    description = "Hao et al. 2024: time-averaged gradient, detached membrane, triangle surrogate (hart[:gamma])"
    positional = ("gamma",)

    def __init__(self, gamma: float = 1.0) -> None:
        super().__init__(gamma=_num("hart gamma", gamma, positive=True))
        self._tri = Surrogate("triangle", self.params["gamma"])

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        # with v_{t-1} detached, ds_t/dx_t = tri(u_t - theta) and nothing crosses steps; the
        # time average of the incoming gradient is applied to the layer's output
        spikes, _ = neuron.run(x_seq, fire=lambda xm, t: self._tri.spike(xm), detach_recurrence=True)
        return _TimeAveragedGrad.apply(spikes)
