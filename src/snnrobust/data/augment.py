"""Training-time augmentations named by ``DatasetInfo.augment`` (a registry, applied to float batches)."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..errors import ConfigError

Augment = Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]
AUGMENTS: dict[str, Augment] = {}


def register_augment(name: str) -> Callable[[Augment], Augment]:
    def deco(fn: Augment) -> Augment:
        AUGMENTS[name] = fn
        return fn

    return deco


@register_augment("hflip")
def hflip(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Flip each image [B, C, H, W] left-right with probability 1/2 (a new tensor)."""
    flip = torch.rand(x.shape[0], generator=generator, device="cpu" if generator is None else generator.device) < 0.5
    flip = flip.to(x.device).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(flip, x.flip(-1), x)


def augment_batch(x: torch.Tensor, kind: Optional[str], generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Apply augmentation ``kind`` (None = none) to a batch [B, C, H, W] of pixels in [0, 1]."""
    if kind is None:
        return x
    if kind not in AUGMENTS:
        raise ConfigError(f"unknown augmentation {kind!r}; known: {', '.join(sorted(AUGMENTS))}")
    return AUGMENTS[kind](x, generator)
