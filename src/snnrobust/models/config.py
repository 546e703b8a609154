"""Typed model configuration, validated at the edge.

Options shared by every architecture live in :class:`ModelConfig`; options that only one
architecture understands (``layers``, ``connect``, ``stem``, ``pool`` ...) go to ``arch``
and are checked against that builder's signature by the registry.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from torch import nn

from ..errors import ConfigError
from ..spiking.encoders import ENCODERS
from ..spiking.neurons import NEURONS
from ..spiking.surrogates import Surrogate


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model exactly (stored in checkpoints).

    Inputs are images [B, in_channels, image_size, image_size] with pixels in [0, 1].
    ``spiking=False`` builds the ANN twin: the same layers with ReLU for every spiking neuron.
    """

    name: str
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32
    width: Optional[int] = None  # base channel count; None = the architecture's default
    T: int = 4
    spiking: bool = True
    encoder: str = "direct"
    encoder_options: dict = field(default_factory=dict)
    neuron: str = "if"
    leak: Optional[float] = None  # None: 1.0 for IF, 0.99 for LIF
    threshold: float = 1.0
    reset: str = "hard"
    v_reset: float = 0.0
    detach_reset: bool = True
    surrogate: str = "atan:2"
    # Per-layer thresholds, one per spiking neuron layer in module (= forward) order; they
    # override ``threshold`` (ANN-to-SNN conversion writes them). Ignored by the ANN twin.
    thresholds: Optional[list[float]] = None
    # The surrogate's width is in units of each layer's own threshold (width x theta, or
    # sharpness / theta): seed 001's (0.3/theta)*max(0, 1-|U/theta-1|) is "triangle:1:0.3" with this set.
    surrogate_relative: bool = False
    normalize_mean: Optional[list[float]] = None  # per-channel, applied to the encoder output
    normalize_std: Optional[list[float]] = None
    arch: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def positive_int(name: str, v: Any) -> None:
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ConfigError(f"model option {name} must be a positive integer, got {v!r}")

        positive_int("in_channels", self.in_channels)
        positive_int("num_classes", self.num_classes)
        positive_int("image_size", self.image_size)
        positive_int("T", self.T)
        if self.num_classes < 2:
            raise ConfigError(f"model option num_classes must be >= 2, got {self.num_classes}")
        if self.width is not None:
            positive_int("width", self.width)
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder '{self.encoder}'; choose one of: {', '.join(ENCODERS)}")
        if not isinstance(self.encoder_options, dict):
            raise ConfigError("model option encoder_options must be a mapping")
        if self.neuron not in NEURONS:
            raise ConfigError(f"unknown neuron '{self.neuron}'; choose one of: {', '.join(NEURONS)}")
        if self.leak is not None and not (isinstance(self.leak, (int, float)) and 0 < self.leak <= 1):
            raise ConfigError(f"model option leak must be in (0, 1] (1 = IF), got {self.leak!r}")
        if self.neuron == "if" and self.leak not in (None, 1, 1.0):
            raise ConfigError("IF neurons have no leak; use neuron: lif to set a leak factor")
        if not (isinstance(self.threshold, (int, float)) and self.threshold > 0):
            raise ConfigError(f"model option threshold must be > 0, got {self.threshold!r}")
        if self.reset not in ("hard", "soft"):
            raise ConfigError(f"model option reset must be 'hard' or 'soft', got {self.reset!r}")
        Surrogate.parse(self.surrogate)  # validates
        if not isinstance(self.surrogate_relative, bool):
            raise ConfigError(f"model option surrogate_relative must be true or false, got {self.surrogate_relative!r}")
        if self.thresholds is not None:
            ok = isinstance(self.thresholds, (list, tuple)) and len(self.thresholds) > 0 and all(
                isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0
                for t in self.thresholds)
            if not ok:
                raise ConfigError(f"model option thresholds must be a non-empty list of positive numbers "
                                  f"(one per spiking layer), got {self.thresholds!r}")
            self.thresholds = [float(t) for t in self.thresholds]
        for key in ("normalize_mean", "normalize_std"):
            v = getattr(self, key)
            if v is not None:
                if isinstance(v, (int, float)):
                    v = [float(v)] * self.in_channels
                    setattr(self, key, v)
                if len(v) != self.in_channels:
                    raise ConfigError(f"model option {key} needs {self.in_channels} values (one per channel), "
                                      f"got {len(v)}")
        if self.normalize_std is not None and any(s <= 0 for s in self.normalize_std):
            raise ConfigError("model option normalize_std must be positive")

    # -- building blocks -----------------------------------------------------------------
    def activation(self) -> nn.Module:
        """A fresh activation: a spiking neuron, or ReLU for the ANN twin."""
        if not self.spiking:
            return nn.ReLU()
        cls = NEURONS[self.neuron]
        kw: dict[str, Any] = dict(threshold=self.threshold, reset=self.reset, v_reset=self.v_reset,
                                  detach_reset=self.detach_reset, surrogate=self.neuron_surrogate(self.threshold))
        if self.neuron == "lif" and self.leak is not None:
            kw["leak"] = self.leak
        return cls(**kw)

    def neuron_surrogate(self, threshold: float) -> Surrogate:
        """The surrogate of a neuron layer with this ``threshold``: ``surrogate`` as written, or
        widened by the threshold when ``surrogate_relative`` (see the field's comment)."""
        sg = Surrogate.parse(self.surrogate)
        return sg.widened(threshold) if self.surrogate_relative else sg

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model option(s) {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def common_keys(cls) -> set[str]:
        return {f.name for f in fields(cls)} - {"name", "arch"}


def ann_twin(cfg: ModelConfig) -> ModelConfig:
    """The ANN twin of ``cfg``: same architecture with ReLU, analog input, one timestep."""
    d = cfg.to_dict()
    d.update(spiking=False, encoder="direct", encoder_options={}, T=1, thresholds=None)
    return ModelConfig.from_dict(d)
