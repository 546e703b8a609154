"""Core dataset types: :class:`ImageDataset`, :class:`DatasetInfo`, :class:`DatasetSplits`.

Images are kept as uint8 tensors [N, C, H, W] (4x smaller than float and exactly what the
files hold); they become float32 pixels in [0, 1] (value / 255) only when read.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DatasetError

Indices = Union[Sequence[int], np.ndarray, torch.Tensor, slice]


def _as_index(indices: Indices) -> Union[slice, torch.Tensor]:
    if isinstance(indices, slice):
        return indices
    if isinstance(indices, torch.Tensor):
        return indices.to(torch.long)
    return torch.as_tensor(np.asarray(indices, dtype=np.int64))


class ImageDataset(Dataset):
    """A labelled image set held in memory.

    Attributes:
        images: uint8 tensor [N, C, H, W] (raw pixel values 0..255).
        labels: int64 tensor [N] (class indices 0..K-1).

    ``ds[i]`` gives ``(float32 image [C, H, W] in [0, 1], int label)`` for DataLoaders;
    :meth:`batch` is the fast path that gathers many images at once without one.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise DatasetError(f"images must be a uint8 tensor [N, C, H, W], got {_describe(images)}")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
            raise DatasetError(f"labels must be a 1-D tensor [N], got {_describe(labels)}")
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].to(torch.float32).div_(255.0), int(self.labels[i])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def batch(self, indices: Indices,
              device: Optional[Union[str, torch.device]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [b, C, H, W] as float32 in [0, 1] and labels int64 [b] for the given indices.

        The uint8 images are moved to ``device`` before conversion (4x less to copy to a GPU).
        """
        idx = _as_index(indices)
        x = self.images[idx]
        y = self.labels[idx]
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return x.to(torch.float32).div_(255.0), y

    def subset(self, n_or_indices: Union[int, Indices]) -> "ImageDataset":
        """The first ``n`` images (deterministic), or the images at the given indices in that order."""
        if isinstance(n_or_indices, (int, np.integer)) and not isinstance(n_or_indices, bool):
            n = int(n_or_indices)
            if n < 0 or n > len(self):
                raise ConfigError(f"asked for {n} images but this split has {len(self)}; use 0..{len(self)}")
            return ImageDataset(self.images[:n], self.labels[:n])
        idx = _as_index(n_or_indices)
        size = len(self)
        if isinstance(idx, torch.Tensor) and idx.numel() and (int(idx.min()) < -size or int(idx.max()) >= size):
            raise ConfigError(f"subset indices out of range for a split of {len(self)} images")
        return ImageDataset(self.images[idx], self.labels[idx])

    def class_counts(self, num_classes: Optional[int] = None) -> list[int]:
        """Number of images per class."""
        return torch.bincount(self.labels, minlength=num_classes or 0).tolist()

    def content_sha256(self) -> str:
        """sha256 over the images and labels in stored order: proves which pixels were used."""
        h = hashlib.sha256()
        h.update(self.images.contiguous().numpy().tobytes())
        h.update(self.labels.contiguous().numpy().astype("<i8").tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"ImageDataset(n={len(self)}, shape={list(self.shape)})"


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {list(x.shape)}"
    return type(x).__name__


@dataclass
class DatasetInfo:
    """What a dataset is and exactly which images a run used (recorded with every result).

    ``split`` says how train/test were made: ``method`` ("stratified" or "official"), ``seed``,
    ``train_sha256``/``test_sha256`` (sha256 of the sorted indices, little-endian int64, into
    ``index_base``) and ``train_data_sha256``/``test_data_sha256`` (images and labels in order).
    ``augment`` is the training augmentation the dataset calls for ("hflip" or None).
    """

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    class_names: list[str]
    n_train: int
    n_test: int
    source: str
    split: dict = field(default_factory=dict)
    augment: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe copy."""
        return _json_safe(asdict(self))


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class DatasetSplits:
    """The train and test splits of one dataset, with its :class:`DatasetInfo`."""

    train: ImageDataset
    test: ImageDataset
    info: DatasetInfo
