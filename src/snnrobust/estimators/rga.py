"""RGA (Bu et al. 2023): backward through the rate function of the time-averaged input."""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from ..spiking.neurons import SpikingNeuron

from .base import exact_forward, _ReplacedBackward, LayerEstimator, _num


class RGA(LayerEstimator):
    name = "rga"
    description = "Bu et al. 2023: rate-function gradient of the time-averaged input (rga[:gamma[:beta[:tau]]])"
    positional = ("gamma", "beta", "tau")

    def __init__(self, gamma: float = 0.2, beta: float = 2.0, tau: Optional[float] = None) -> None:
        gamma, beta = _num("rga gamma", gamma, min_=0.0), _num("rga beta", beta, positive=True)
        if tau is not None:
            tau = _num("rga tau", tau, positive=True)
            if tau > 1:
                raise ConfigError(f"rga tau (leak factor) must be in (0, 1], got {tau}")
        super().__init__(gamma=gamma, beta=beta, tau=tau)

    def rate_derivative(self, xbar: torch.Tensor, threshold: float, leak: float,
                        v_rest: float = 0.0) -> torch.Tensor:
        """f'(xbar) [same shape as xbar, units 1/input] for a neuron with this threshold,
        leak factor (tau overrides it) and resting/reset potential; integrates to 1 spike per
        step over [0, beta * (threshold - v_rest)]."""
        gamma, beta = self.params["gamma"], self.params["beta"]
        tau = self.params["tau"] if self.params["tau"] is not None else leak
        scale = threshold - v_rest  # D: input (per step, summed) that carries rest to threshold
        if not scale > 0:
            raise ConfigError(f"rga: threshold {threshold:g} must exceed the reset potential {v_rest:g}")
        lo, hi = (1 - tau) * scale, beta * scale
        if not hi > lo:
            raise ConfigError(f"rga: beta={beta} must exceed 1 - tau = {1 - tau:g}")
        if not gamma * (1 - tau) < 1:
            # the sub-threshold band alone would already reach 1 spike/step: no room for the slope
            raise ConfigError(f"rga: gamma * (1 - tau) = {gamma * (1 - tau):g} must be < 1")
        # both pieces in units of the normalized input xbar / D (see the module docstring)
        slope = (1 - gamma * (1 - tau)) / ((beta - 1 + tau) * scale)
        zero = torch.zeros_like(xbar)
        sub = torch.where((xbar >= 0) & (xbar <= lo), torch.full_like(xbar, gamma / scale), zero)
        return torch.where((xbar > lo) & (xbar <= hi), torch.full_like(xbar, slope), sub)

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        def run(x: torch.Tensor):
            spikes, _ = exact_forward(neuron, x)
            fprime = self.rate_derivative(x.mean(0), neuron.threshold, neuron.leak, neuron.v_rest)
            # dL/dxbar = f'(xbar) * sum_t g_t ; dxbar/dx_t = 1/T
            return spikes, lambda g: (fprime * g.mean(0)).unsqueeze(0).expand_as(g)

        return _ReplacedBackward.apply(x_seq, run)
