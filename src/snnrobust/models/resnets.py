"""SEW-ResNet (Fang et al. 2021) and Spiking-ResNet, multi-step on [T, B, C, H, W].

Stems: ``cifar`` = 3x3 conv stride 1 (+ optional pool), ``imagenet`` = 7x7 conv stride 2
+ 3x3/2 pool (seed 000's code). ``pool`` ('max' or 'avg') is the kind used wherever the
network pools (the stem pool; the head uses ``head_pool``). Stages double the width and
halve the resolution; ``layers`` gives the number of basic blocks per stage (2-4 stages).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.layers import Add, Connect, SeqToBatch, seq_bn, seq_conv, seq_linear, seq_pool
from .config import ModelConfig
from .registry import register_model


class Stem(nn.Sequential):
    def __init__(self, cfg: ModelConfig, stem: str, pool: str, stem_pool: bool | None) -> None:
        w = cfg.width
        if stem == "cifar":
            layers = [seq_conv(cfg.in_channels, w, 3), seq_bn(w), cfg.activation()]
            with_pool = bool(stem_pool)
        elif stem == "imagenet":
            layers = [seq_conv(cfg.in_channels, w, 7, stride=2, padding=3), seq_bn(w), cfg.activation()]
            with_pool = True if stem_pool is None else bool(stem_pool)
        else:
            raise ConfigError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if with_pool:
            layers.append(seq_pool(pool, 3, 2, 1))
        super().__init__(*layers)


class Head(nn.Module):
    """Global pool over H, W then linear: [T, B, C, H, W] -> [T, B, classes]."""

    def __init__(self, channels: int, num_classes: int, head_pool: str) -> None:
        super().__init__()
        if head_pool == "avg":
            self.pool = SeqToBatch(nn.AdaptiveAvgPool2d(1))
        elif head_pool == "max":
            self.pool = SeqToBatch(nn.AdaptiveMaxPool2d(1))
        else:
            raise ConfigError(f"head_pool must be 'max' or 'avg', got {head_pool!r}")
        self.fc = seq_linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(2))


class SEWBlock(nn.Module):
    """SEW basic block: out = g(SN(BN(conv(SN(BN(conv(x)))))), shortcut(x)); the
    downsample shortcut is conv1x1-BN-SN so that g always joins spikes."""

    recompute_unit = True  # models/recompute.py: recomputed in backward when asked

    def __init__(self, cfg: ModelConfig, cin: int, cout: int, stride: int, connect: str) -> None:
        super().__init__()
        self.conv1, self.bn1, self.sn1 = seq_conv(cin, cout, 3, stride), seq_bn(cout), cfg.activation()
        self.conv2, self.bn2, self.sn2 = seq_conv(cout, cout, 3), seq_bn(cout), cfg.activation()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(seq_conv(cin, cout, 1, stride, 0), seq_bn(cout), cfg.activation())
        self.connect = Connect(connect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sn1(self.bn1(self.conv1(x)))
        out = self.sn2(self.bn2(self.conv2(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.connect(out, identity)


class SpikingBlock(nn.Module):
    """Spiking-ResNet basic block: out = SN(BN(conv(SN(BN(conv(x))))) + shortcut(x))."""

    recompute_unit = True  # models/recompute.py: recomputed in backward when asked

    def __init__(self, cfg: ModelConfig, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.sn1 = seq_conv(cin, cout, 3, stride), seq_bn(cout), cfg.activation()
        self.conv2, self.bn2 = seq_conv(cout, cout, 3), seq_bn(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(seq_conv(cin, cout, 1, stride, 0), seq_bn(cout))
        self.add = Add()
        self.sn2 = cfg.activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.sn2(self.add(out, identity))


class ResNet(nn.Module):
    def __init__(self, cfg: ModelConfig, layers, block: str, connect: str, stem: str, pool: str,
                 stem_pool: bool | None, head_pool: str) -> None:
        super().__init__()
        if pool not in ("max", "avg"):
            raise ConfigError(f"pool must be 'max' or 'avg', got {pool!r}")
        layers = list(layers)
        if not (2 <= len(layers) <= 4 and all(isinstance(n, int) and n >= 1 for n in layers)):
            raise ConfigError(f"layers must list 2 to 4 positive block counts, got {layers!r}")
        self.stem = Stem(cfg, stem, pool, stem_pool)
        blocks: list[nn.Module] = []
        cin = cfg.width
        for i, n in enumerate(layers):
            cout = cfg.width * 2**i
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                if block == "sew":
                    blocks.append(SEWBlock(cfg, cin, cout, stride, connect))
                else:
                    blocks.append(SpikingBlock(cfg, cin, cout, stride))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = Head(cin, cfg.num_classes, head_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _sew(cfg: ModelConfig, layers=(2, 2, 2, 2), connect: str = "ADD", stem: str = "cifar", pool: str = "max",
         stem_pool: bool | None = None, head_pool: str = "avg") -> nn.Module:
    return ResNet(cfg, layers, "sew", connect, stem, pool, stem_pool, head_pool)


def _spiking(cfg: ModelConfig, layers=(2, 2, 2, 2), stem: str = "cifar", pool: str = "max",
             stem_pool: bool | None = None, head_pool: str = "avg") -> nn.Module:
    return ResNet(cfg, layers, "spiking", "ADD", stem, pool, stem_pool, head_pool)


register_model("sew_resnet", "SEW-ResNet with any block counts (`layers`), connect ADD/AND/IAND")(_sew)
register_model("sew_resnet18", "SEW-ResNet-18 (Fang et al. 2021; as in Luu et al. 2025)", layers=(2, 2, 2, 2))(_sew)
register_model("sew_resnet34", "SEW-ResNet-34", layers=(3, 4, 6, 3))(_sew)
register_model("spiking_resnet", "Spiking-ResNet with any block counts (`layers`)")(_spiking)
register_model("spiking_resnet18", "Spiking-ResNet-18 (spike after the residual add)", layers=(2, 2, 2, 2))(_spiking)
register_model("spiking_resnet34", "Spiking-ResNet-34", layers=(3, 4, 6, 3))(_spiking)
