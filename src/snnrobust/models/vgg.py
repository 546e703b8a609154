"""Spiking VGG5 and VGG11 as in seed 001 (no bias, no BatchNorm by default, average pooling).

VGG5 at width 64 on 32x32 input: conv3-64, pool2, conv3-128, conv3-128, pool2,
fc 8192 -> 1024 -> 1024 -> classes. Channel counts scale with ``width``; the hidden fc
size is ``fc_hidden`` (default 16*width). Pools that would shrink a feature map below
1x1 are skipped, so small inputs (28x28) work with VGG11.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.layers import seq_bn, seq_conv, seq_linear, seq_pool
from .config import ModelConfig
from .registry import register_model

# Channel multipliers of width; "M" = pool.
PLANS = {
    "vgg5": [1, "M", 2, 2, "M"],
    "vgg11": [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
}


class VGG(nn.Module):
    def __init__(self, cfg: ModelConfig, plan: list, pool: str, bn: bool, bias: bool, fc_hidden: int | None,
                 fc_layers: int) -> None:
        super().__init__()
        feats: list[nn.Module] = []
        c, size = cfg.in_channels, cfg.image_size
        for item in plan:
            if item == "M":
                if size >= 2:
                    feats.append(seq_pool(pool, 2, 2))
                    size //= 2
                continue
            cout = cfg.width * item
            feats.append(seq_conv(c, cout, 3, bias=bias))
            if bn:
                feats.append(seq_bn(cout))
            feats.append(cfg.activation())
            c = cout
        self.features = nn.Sequential(*feats)
        hidden = fc_hidden or 16 * cfg.width
        if fc_layers < 1:
            raise ConfigError(f"fc_layers must be >= 1, got {fc_layers}")
        dims = [c * size * size] + [hidden] * (fc_layers - 1) + [cfg.num_classes]
        cls: list[nn.Module] = []
        for i in range(len(dims) - 1):
            cls.append(seq_linear(dims[i], dims[i + 1], bias=bias))
            if i < len(dims) - 2:
                cls.append(cfg.activation())
        self.classifier = nn.Sequential(*cls)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(2))


def _vgg(cfg: ModelConfig, plan: str = "vgg5", pool: str = "avg", bn: bool = False, bias: bool = False,
         fc_hidden: int | None = None, fc_layers: int = 3) -> nn.Module:
    if plan not in PLANS:
        raise ConfigError(f"VGG plan must be one of {', '.join(PLANS)}, got {plan!r}")
    return VGG(cfg, PLANS[plan], pool, bn, bias, fc_hidden, fc_layers)


register_model("vgg5", "spiking VGG5 of Sharmin et al. 2020 (avg pooling, no BN, no bias)", plan="vgg5")(_vgg)
register_model("vgg11", "spiking VGG11 of Sharmin et al. 2020 (CIFAR-100)", plan="vgg11")(_vgg)
