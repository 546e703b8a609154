"""Wide ResNet WRN-depth-k (pre-activation blocks: BN -> activation -> conv), the
architecture of the SR defense baseline. depth = 6n + 4; widths 16, 16k, 32k, 64k with
16 = ``width``."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.layers import Add, seq_bn, seq_conv
from .config import ModelConfig
from .registry import register_model
from .resnets import Head


class WideBlock(nn.Module):
    recompute_unit = True  # models/recompute.py: recomputed in backward when asked

    def __init__(self, cfg: ModelConfig, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.sn1, self.conv1 = seq_bn(cin), cfg.activation(), seq_conv(cin, cout, 3, stride)
        self.bn2, self.sn2, self.conv2 = seq_bn(cout), cfg.activation(), seq_conv(cout, cout, 3)
        self.shortcut = seq_conv(cin, cout, 1, stride, 0) if (stride != 1 or cin != cout) else None
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.sn1(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(o)
        out = self.conv2(self.sn2(self.bn2(self.conv1(o))))
        return self.add(out, identity)


class WRN(nn.Module):
    def __init__(self, cfg: ModelConfig, depth: int, widen: int, head_pool: str) -> None:
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ConfigError(f"WRN depth must be 6n+4 (10, 16, 22, 28 ...), got {depth}")
        n = (depth - 4) // 6
        w = cfg.width
        self.stem = seq_conv(cfg.in_channels, w, 3)
        blocks: list[nn.Module] = []
        cin = w
        for i, mult in enumerate([1, 2, 4]):
            cout = w * mult * widen
            for j in range(n):
                blocks.append(WideBlock(cfg, cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.sn = seq_bn(cin), cfg.activation()
        self.head = Head(cin, cfg.num_classes, head_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.sn(self.bn(self.blocks(self.stem(x)))))


def _wrn(cfg: ModelConfig, depth: int = 16, widen: int = 4, head_pool: str = "avg") -> nn.Module:
    return WRN(cfg, depth, widen, head_pool)


register_model("wrn16", "Wide ResNet WRN-16-k (pre-activation; SR baseline)", default_width=16, depth=16)(_wrn)
