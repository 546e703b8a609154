"""BPTR (Ding et al. 2022): the incoming gradient masked by whether each neuron fired at all."""

from __future__ import annotations


import torch

from ..spiking.neurons import SpikingNeuron

from .base import exact_forward, _ReplacedBackward, LayerEstimator


class BPTR(LayerEstimator):
    name = "bptr"
    description = "Ding et al. 2022: dL/dx_t = dL/ds_t * [mean_t s_t > 0] per neuron"

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        def run(x: torch.Tensor):
            spikes, _ = exact_forward(neuron, x)
            mask = (spikes.mean(0) > 0).to(x.dtype)
            return spikes, lambda g: g * mask

        return _ReplacedBackward.apply(x_seq, run)
