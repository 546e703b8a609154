"""Per-sample attack losses: logits [B, K] and labels [B] -> loss [B].

Every loss is *maximized* by the attacker (higher = closer to, or further into,
misclassification):

- ``ce``: cross-entropy of the true class.
- ``dlr``: Croce & Hein's difference of logits ratio,
  ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)`` (pi = logits sorted descending), invariant
  to shift and scale of the logits (needs K >= 3).
- ``cw``: Carlini-Wagner margin ``max_{j != y} z_j - z_y`` (> 0 means misclassified).

Targeted forms take ``(logits, y, target)``: ``ce-targeted`` = ``-CE(logits, target)``,
``dlr-targeted`` = ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2)`` (K >= 4), ``cw-targeted`` =
``z_t - max_{j != t} z_j``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError

_TINY = 1e-12


def _other_max(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """max_{j != cls} z_j — [B]."""
    masked = logits.scatter(1, cls.view(-1, 1), float("-inf"))
    return masked.amax(1)


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] < 3:
        raise ConfigError("the dlr loss needs >= 3 classes; use loss 'ce' or 'cw' for binary models")
    top = logits.sort(1, descending=True).values
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    return -(z_y - _other_max(logits, y)) / (top[:, 0] - top[:, 2] + _TINY)


def cw_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    return _other_max(logits, y) - z_y


def ce_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(logits, target, reduction="none")


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] < 4:
        raise ConfigError("the targeted dlr loss needs >= 4 classes; use 'ce' for smaller models")
    top = logits.sort(1, descending=True).values
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    z_t = logits.gather(1, target.view(-1, 1)).squeeze(1)
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


def cw_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    z_t = logits.gather(1, target.view(-1, 1)).squeeze(1)
    return z_t - _other_max(logits, target)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": ce,
    "dlr": dlr,
    "cw": cw_margin,
    "ce-targeted": ce_targeted,
    "dlr-targeted": dlr_targeted,
    "cw-targeted": cw_targeted,
}

_TARGETED = {"ce": "ce-targeted", "dlr": "dlr-targeted", "cw": "cw-targeted"}


def is_targeted(name: str) -> bool:
    return name.endswith("-targeted")


def get_loss(name: str, targeted: bool = False) -> Callable[..., torch.Tensor]:
    """The loss called ``name`` (``targeted=True`` maps ce/dlr/cw to their targeted form,
    which takes ``(logits, y, target)``)."""
    key = str(name).lower().replace("_", "-")
    if key == "cw-margin":
        key = "cw"
    if targeted:
        key = _TARGETED.get(key, key)
    if key not in LOSSES:
        raise ConfigError(f"unknown attack loss '{name}'; choose one of: {', '.join(LOSSES)}")
    return LOSSES[key]
