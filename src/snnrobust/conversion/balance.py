"""Per-layer thresholds of a converted SNN, and the weight scaling they imply.

Units. An IF neuron (leak 1, soft reset by subtraction) with threshold theta driven by a
constant current I fires at rate r = clip(I / theta, 0, 1) spikes per step, and its spikes
have size 1. So if the ANN's hidden layer l outputs a_l, the SNN's layer l fires at
r_l ~ a_l / lambda_l with lambda_l = theta_1 * ... * theta_l (the product of the thresholds
up to l; lambda_0 = 1 for the analog or Poisson input). Layer l+1 then receives
W r_l = z_{l+1} / lambda_l, where z is the ANN's pre-activation, so:

- every hidden layer's bias is divided by lambda_{l-1} (its input's scale), and
- the readout's weight is multiplied by lambda_{L-1}, so that the SNN's logits (the mean
  over steps of the readout) estimate the ANN's logits, not a scaled copy of them.

Two ways to choose theta:

- ``balance`` (Sengupta et al. 2019, as used by Sharmin et al. 2020): layer by layer, with
  the earlier layers already converted and spiking, theta_l = the largest input current that
  layer l receives at any step, on any neuron, for any calibration image.
- ``percentile`` (data-based normalization, Rueckauer et al. 2017): lambda_l = the p-th
  percentile of the ANN's positive activations of layer l on the calibration images, and
  theta_l = lambda_l / lambda_{l-1}. Percentile p < 100 ignores rare outliers, which makes
  the rates larger and the conversion faster to converge in T.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..errors import ConfigError
from ..models import SpikingClassifier
from .simulate import input_chunks
from .structure import Stage

Progress = Optional[Callable[[str], None]]


@torch.no_grad()
def scale_weights(snn: SpikingClassifier, ann: SpikingClassifier, stages: list[Stage],
                  thresholds: list[float]) -> None:
    """Write the (BatchNorm-folded) ANN's weights into ``snn`` with the scaling that the
    first ``len(thresholds)`` hidden layers' thresholds imply (module docstring): hidden
    biases / lambda_{l-1}, readout weight * lambda_{L-1}. Layers past the known thresholds
    get the scale of the last known one (balancing sets them again when it reaches them)."""
    lam = 1.0
    hidden = 0
    for st in stages:
        src = ann.backbone.get_submodule(st.weight)
        dst = snn.backbone.get_submodule(st.weight)
        if st.act is None:
            dst.weight.copy_(src.weight * lam)
            if dst.bias is not None:
                dst.bias.copy_(src.bias)
        else:
            dst.weight.copy_(src.weight)
            if dst.bias is not None:
                dst.bias.copy_(src.bias / lam)
            if hidden < len(thresholds):
                lam *= thresholds[hidden]
            hidden += 1


class _Stop(Exception):
    """Raised by a hook once the layer being balanced has seen its input (skips the rest)."""


@torch.no_grad()
def balance_thresholds(snn: SpikingClassifier, ann: SpikingClassifier, stages: list[Stage], x: torch.Tensor,
                       T: int, batch_size: int = 128, chunk: int = 16, seed: int = 0,
                       progress: Progress = None) -> list[float]:
    """Layer-wise threshold balancing (module docstring) on calibration images ``x``
    [N, C, H, W] in [0, 1] over ``T`` steps. Sets the thresholds and weights of ``snn``
    as it goes and returns theta per hidden layer. The input current is measured after
    the layer's own bias, i.e. exactly what the neuron integrates."""
    hidden = [st for st in stages if st.act is not None]
    thresholds: list[float] = []
    for i, st in enumerate(hidden):
        scale_weights(snn, ann, stages, thresholds)
        neuron = snn.backbone.get_submodule(st.act)
        best = -math.inf

        def grab(_mod, inp):
            nonlocal best
            best = max(best, float(inp[0].max()))
            raise _Stop

        handle = neuron.register_forward_pre_hook(grab)
        try:
            for lo in range(0, x.shape[0], batch_size):
                for _, s in input_chunks(snn, x[lo:lo + batch_size], T, chunk, seed=seed + lo):
                    try:
                        snn.backbone(s)
                    except _Stop:
                        pass
        finally:
            handle.remove()
        if not best > 0:
            raise ConfigError(f"threshold balancing: layer '{st.act}' never receives a positive input on the "
                              f"calibration images (max {best:.3g}); its ReLU is dead — retrain the ANN")
        neuron.threshold = best
        thresholds.append(best)
        if progress is not None:
            progress(f"balanced {st.act}: threshold {best:.4g} ({i + 1}/{len(hidden)})")
    scale_weights(snn, ann, stages, thresholds)
    return thresholds


@torch.no_grad()
def ann_activations(ann: SpikingClassifier, stages: list[Stage], x: torch.Tensor,
                    batch_size: int = 256) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The ANN's hidden activations (ReLU outputs) per layer, each [N, ...], and its logits
    [N, K], on images ``x`` [N, C, H, W] (eval mode)."""
    hidden = [st for st in stages if st.act is not None]
    outs: list[list[torch.Tensor]] = [[] for _ in hidden]
    handles = []
    for j, st in enumerate(hidden):
        def keep(_mod, _inp, out, j=j):
            outs[j].append(out[0].detach())  # [T=1, B, ...] -> [B, ...]: the ANN's steps are identical
        handles.append(ann.backbone.get_submodule(st.act).register_forward_hook(keep))
    logits = []
    try:
        ann.eval()
        for lo in range(0, x.shape[0], batch_size):
            xb = x[lo:lo + batch_size]
            ann.check_input(xb)
            logits.append(ann.forward_encoded(xb.unsqueeze(0)))  # direct input, one step: [1, B, C, H, W]
    finally:
        for h in handles:
            h.remove()
    return [torch.cat(o) for o in outs], torch.cat(logits)


def percentile_thresholds(ann: SpikingClassifier, stages: list[Stage], x: torch.Tensor, percentile: float,
                          batch_size: int = 256) -> tuple[list[float], list[float]]:
    """Data-based normalization (module docstring): returns (theta per hidden layer,
    lambda per hidden layer). lambda_l is the ``percentile`` of layer l's positive ANN
    activations on ``x``, taken as the order statistic of rank ceil(p/100 * n)."""
    acts, _ = ann_activations(ann, stages, x, batch_size)
    hidden = [st for st in stages if st.act is not None]
    lams: list[float] = []
    for st, a in zip(hidden, acts):
        pos = a[a > 0].flatten()
        if pos.numel() == 0:
            raise ConfigError(f"percentile normalization: layer '{st.act}' is never active on the calibration "
                              "images; its ReLU is dead — retrain the ANN")
        k = max(1, math.ceil(percentile / 100 * pos.numel()))
        lams.append(float(pos.kthvalue(k).values))
    thetas = [lams[0]] + [lams[i] / lams[i - 1] for i in range(1, len(lams))]
    return thetas, lams
