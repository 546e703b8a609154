"""What every training-time defense shares: the :class:`Defense` interface the trainer calls,
validation of its options (one-line ConfigErrors naming ``config 'defense'``), and a context
that keeps BatchNorm running statistics out of extra forward passes.

The trainer's step with a defense ``d`` on images ``x`` [B, C, H, W] in [0, 1], labels ``y`` [B]:

    x_train = d.inputs(model, x, y)        # adversarial training: the crafted images; else x
    loss, logits = d.loss(model, x_train, y)   # CE (+ a penalty, SR); logits [B, K] for accuracy
    loss.backward(); optimizer.step()
    d.after_step(model)                    # RAT: the orthogonal retraction of every weight

Everything random a defense draws (PGD's random start) comes from a CPU generator re-seeded by
:meth:`Defense.start_epoch` with the trainer's per-epoch seed, so ``--resume`` stays exact.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError


def option_error(defense: str, name: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"config 'defense': {defense} option '{name}' must be {what}, got {value!r}")


def check_number(defense: str, name: str, value: Any, low: float = 0.0, high: float = math.inf,
                 low_open: bool = True) -> float:
    """A finite number in (low, high] (``low_open``) or [low, high]; fractions such as "8/255"
    are accepted (the form eps is written in everywhere else)."""
    if isinstance(value, str) and "/" in value:
        from ..evaluation.threat import parse_eps

        try:
            value = parse_eps(value)
        except ConfigError:
            raise option_error(defense, name, "a number or a fraction like 8/255", value) from None
    what = (f"a number {'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else ""))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise option_error(defense, name, what, value)
    v = float(value)
    if (v <= low if low_open else v < low) or v > high:
        raise option_error(defense, name, what, value)
    return v


def check_int(defense: str, name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise option_error(defense, name, f"an integer >= {low}", value)
    return value


def check_bool(defense: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise option_error(defense, name, "true or false", value)
    return value


def check_choice(defense: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise option_error(defense, name, "one of " + ", ".join(choices), value)
    return value


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside leave every BatchNorm's running statistics (and batch count) as
    they were, while train-mode BN still normalizes with the batch's own statistics: a
    defense's extra pass (SR's perturbed copy of the batch) must not count as a second batch."""
    saved = []
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            count = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, count))
            m.momentum = 0.0  # running <- 1 * running + 0 * batch: unchanged
    try:
        yield
    finally:
        with torch.no_grad():
            for m, momentum, count in saved:
                m.momentum = momentum
                if count is not None:
                    m.num_batches_tracked.copy_(count)


class Defense:
    """Base class: plain training (CE on the clean batch). Subclasses set ``name``,
    ``description``, ``options`` (name -> default) and implement :meth:`_validate` (resolve
    and check the options; return them in ``options`` order) and the hooks they change."""

    name: ClassVar[str] = "none"
    description: ClassVar[str] = ""
    #: option name -> default (None: resolved from other options by :meth:`_validate`)
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **given: Any) -> None:
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ConfigError(f"config 'defense': {self.name} has no option(s) {', '.join(unknown)}; "
                              f"its options: {', '.join(self.options) or 'none'}")
        self.settings: dict[str, Any] = self._validate({**self.options, **given})
        self.gen = torch.Generator().manual_seed(0)
        self._stats: dict[str, list[float]] = {}

    def _validate(self, opts: dict[str, Any]) -> dict[str, Any]:
        return opts

    # -- description ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """``{"name": ..., **every resolved setting}``: what TrainConfig and checkpoints keep."""
        return {"name": self.name, **self.settings}

    def describe(self) -> str:
        """One line, e.g. ``sr (Liu et al. 2024's ...): lambda 0.002, h 0.01``."""
        shown = ", ".join(f"{k} {_show(v, pixels=k in _PIXEL_OPTIONS)}" for k, v in self.settings.items())
        return f"{self.name} ({self.description})" + (f": {shown}" if shown else "")

    # -- hooks the trainer calls ------------------------------------------------------------
    def start_epoch(self, seed: int) -> None:
        """Re-seed this defense's random draws for an epoch (exact resume) and clear its stats."""
        self.gen.manual_seed(int(seed))
        self._stats = {}

    def inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The images [B, C, H, W] this step trains on (adversarial training crafts them)."""
        return x

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar training loss with a graph, logits [B, K]) on images ``x``."""
        logits = model(x)
        return F.cross_entropy(logits.float(), y), logits

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimizer step."""

    def epoch_stats(self, model: nn.Module) -> dict[str, float]:
        """Numbers this defense reports per epoch (stored in the checkpoint's metrics)."""
        return {k: sum(v) / len(v) for k, v in self._stats.items() if v}

    def _record(self, key: str, value: float) -> None:
        self._stats.setdefault(key, []).append(float(value))


#: Options measured in pixel units, shown as fractions of 255 where they are one (eps 8/255).
_PIXEL_OPTIONS = frozenset({"eps", "step_size", "h"})


def _show(v: Any, pixels: bool = False) -> str:
    if v is None:
        return "auto"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        from ..evaluation.threat import format_eps

        return format_eps(v) if pixels and 0 < v < 1 and abs(v * 255 - round(v * 255)) < 1e-9 else f"{v:g}"
    if isinstance(v, list):  # several estimators, taken in turn
        return " / ".join(_show(one) for one in v) + " in turn"
    return str(v)


def input_bounds(model: nn.Module) -> tuple[float, float]:
    """The pixel range the model's encoder accepts ([0, 1] for every snnrobust encoder)."""
    lo, hi = getattr(getattr(model, "encoder", None), "input_range", (0.0, 1.0))
    return float(lo), float(hi)


def none_if_auto(v: Optional[Any]) -> Optional[Any]:
    return None if v in (None, "auto") else v
