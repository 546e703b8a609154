"""The model wrapper every architecture shares: encoder -> normalization -> backbone -> readout.

``forward(x)``: images [B, C, H, W], pixels in [0, 1] -> logits [B, num_classes].
``encode(x)``: -> encoder output [T, B, C, H, W]; ``forward_encoded(s)``: -> logits.
Split so that an attack may perturb the encoded tensor (seed 000's replication option)
and so that analysis can see the spike input. The readout averages the backbone's
per-step outputs over T. Every forward starts with :func:`reset_states`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.encoders import Encoder, create_encoder
from ..spiking.functional import reset_states
from .config import ModelConfig
from .time_segments import run_in_segments, segmentable


class Normalize(nn.Module):
    """(s - mean) / std per channel on [T, B, C, H, W]; identity when not configured."""

    def __init__(self, mean: list[float] | None, std: list[float] | None, channels: int) -> None:
        super().__init__()
        self.enabled = mean is not None or std is not None
        m = torch.tensor(mean if mean is not None else [0.0] * channels)
        s = torch.tensor(std if std is not None else [1.0] * channels)
        self.register_buffer("mean", m.view(1, 1, -1, 1, 1), persistent=False)
        self.register_buffer("std", s.view(1, 1, -1, 1, 1), persistent=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.mean) / self.std if self.enabled else s


class SpikingClassifier(nn.Module):
    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder: Encoder = create_encoder(config.encoder, config.T, **config.encoder_options)
        self.normalize = Normalize(config.normalize_mean, config.normalize_std, config.in_channels)
        self.backbone = backbone
        #: backward in checkpointed segments of this many timesteps (None: all at once); set by
        #: :func:`~snnrobust.models.time_segments.time_segments`
        self.time_segment: "int | None" = None

    @property
    def spiking(self) -> bool:
        return self.config.spiking

    @property
    def T(self) -> int:
        return self.config.T

    def check_input(self, x: torch.Tensor) -> None:
        c, n = self.config.in_channels, self.config.image_size
        if self.encoder.name == "frames":  # event frames [B, T, C, H, W]
            if x.dim() != 5 or x.shape[1] != self.T or x.shape[2] != c:
                raise ConfigError(
                    f"model expects event frames [B, {self.T}, {c}, {n}, {n}], got {list(x.shape)}; "
                    f"load the event dataset with the model's T and binning"
                )
            return
        if x.dim() != 4 or x.shape[1] != c:
            raise ConfigError(
                f"model expects images [B, {c}, {n}, {n}], got {list(x.shape)}; "
                f"rebuild it with in_channels/image_size matching the dataset"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in [0, 1] (event frames: [B, T, C, H, W]) -> [T, B, C, H, W]."""
        self.check_input(x)
        return self.encoder(x)

    def forward_encoded(self, s: torch.Tensor) -> torch.Tensor:
        """[T, B, C, H, W] -> logits [B, num_classes] (mean of per-step outputs)."""
        reset_states(self)
        s = self.normalize(s)
        if (self.time_segment is not None and torch.is_grad_enabled() and self.time_segment < s.shape[0]
                and segmentable(self.backbone)):
            out = run_in_segments(self.backbone, s, self.time_segment)  # memory-lean BPTT over time
        else:
            out = self.backbone(s)
        return out.mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_encoded(self.encode(x))
