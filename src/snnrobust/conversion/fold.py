"""Fold BatchNorm into the conv/linear layer before it, exactly (in eval mode).

A BatchNorm in eval mode is the per-channel affine map y = gamma (z - mu) / sqrt(var + eps) + beta.
Applied to z = W x + b it gives y = W' x + b' with

    s  = gamma / sqrt(var + eps)          (one factor per output channel)
    W' = s * W                            (row / filter c scaled by s_c)
    b' = s * (b - mu) + beta              (b = 0 when the layer had no bias)

so the folded network computes the same function with no BatchNorm and a bias on every
layer. The folded model is the same architecture built with ``bn=False, bias=True`` (VGG's
options); an architecture that has BatchNorm but no such options cannot be folded.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..models import ModelConfig, SpikingClassifier, model_from_dict
from .structure import Stage, show, trace_stages


def folded_config(cfg: ModelConfig, has_bn: bool) -> ModelConfig:
    """``cfg`` rebuilt without BatchNorm and with biases (when ``has_bn``), else a copy."""
    d = cfg.to_dict()
    if has_bn:
        arch = dict(d["arch"])
        missing = [k for k in ("bn", "bias") if k not in arch]
        if missing:
            raise ConfigError(f"cannot fold BatchNorm of model '{cfg.name}': the architecture has no "
                              f"{'/'.join(missing)} option, so its folded form (bn=false, bias=true) cannot be built")
        arch.update(bn=False, bias=True)
        d["arch"] = arch
    return ModelConfig.from_dict(d)


@torch.no_grad()
def fold_batchnorm(model: SpikingClassifier) -> tuple[SpikingClassifier, list[Stage]]:
    """The same network with every BatchNorm folded into the layer before it.

    ``model``: a convertible model (see :func:`~snnrobust.conversion.structure.trace_stages`).
    Returns ``(folded model in eval mode, its stages)``; the folded model's outputs equal the
    original's in eval mode up to float rounding. ``model`` itself is not changed."""
    stages = trace_stages(model)
    has_bn = any(s.bn is not None for s in stages)
    folded = model_from_dict(folded_config(model.config, has_bn).to_dict())
    folded.to(next(model.parameters()).device).eval()
    new_stages = trace_stages(folded)
    if len(new_stages) != len(stages):
        raise ConfigError(f"cannot fold model '{model.config.name}': its folded form has {len(new_stages)} "
                          f"conv/linear layers, not {len(stages)}")
    src_mod, dst_mod = model.backbone, folded.backbone
    for s, d in zip(stages, new_stages):
        w_src = src_mod.get_submodule(s.weight)
        w_dst = dst_mod.get_submodule(d.weight)
        if w_src.weight.shape != w_dst.weight.shape:
            raise ConfigError(f"cannot fold layer '{show(s.weight)}': weight shape {list(w_src.weight.shape)} does not "
                              f"match the folded model's {list(w_dst.weight.shape)}")
        weight = w_src.weight.detach().clone()
        bias = (w_src.bias.detach().clone() if w_src.bias is not None
                else torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))
        if s.bn is not None:
            bn = src_mod.get_submodule(s.bn)
            if bn.running_mean is None or bn.running_var is None:
                raise ConfigError(f"cannot fold BatchNorm '{show(s.bn)}': it keeps no running statistics")
            scale = torch.rsqrt(bn.running_var.to(weight.dtype) + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight.detach()
            shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(scale)
            weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
            bias = (bias - bn.running_mean.to(weight.dtype)) * scale + shift
        w_dst.weight.copy_(weight)
        if w_dst.bias is not None:
            w_dst.bias.copy_(bias)
        elif bias.abs().max() > 0:  # only reachable when the ANN had biases the target cannot hold
            raise ConfigError(f"cannot convert layer '{show(s.weight)}': it needs a bias but model "
                              f"'{model.config.name}' is built without biases")
    return folded, new_stages
