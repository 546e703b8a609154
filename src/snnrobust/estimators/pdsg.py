"""PDSG (Lun et al. 2025): Gaussian surrogate whose width is the spread of the membrane potential."""

from __future__ import annotations


import torch

from ..spiking.neurons import SpikingNeuron
from ..spiking.surrogates import Surrogate

from .base import exact_forward, _bcast, LayerEstimator, _num


class PDSG(LayerEstimator):
    name = "pdsg"
    description = "Lun et al. 2025: Gaussian surrogate, sigma = std of the layer's membrane potential"
    positional = ("min_sigma",)

    def __init__(self, min_sigma: float = 1e-6) -> None:
        super().__init__(min_sigma=_num("pdsg min_sigma", min_sigma, positive=True))
        self._gauss = Surrogate("gaussian")

    def label(self) -> str:
        return "PDSG"

    def sigma(self, u: torch.Tensor) -> torch.Tensor:
        """Per-sample std of the membrane [T, B, ...] over steps and neurons -> [B]."""
        flat = u.transpose(0, 1).reshape(u.shape[1], -1)
        return flat.std(dim=1, unbiased=False).clamp_min(self.params["min_sigma"])

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        _, u = exact_forward(neuron, x_seq, keep_state=False)  # look ahead for sigma only
        sigma = _bcast(self.sigma(u), x_seq[0])
        return neuron.run(x_seq, fire=lambda xm, t: self._gauss.spike(xm, param=sigma))[0]
