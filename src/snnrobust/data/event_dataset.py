"""A labelled set of event streams, read as frames: :class:`EventDataset`.

The streams are held as one concatenated structured array (:data:`~.events.EVENT_DTYPE`) with
per-sample offsets, so a dataset of thousands of recordings is a handful of numpy arrays.
:meth:`EventDataset.batch` integrates the asked samples into frames [B, T, 2, H, W] (float32
event counts, or 0/1 with ``clip=1``) under the dataset's :class:`~.events.FrameSpec`, in one
vectorised pass over all their events. It has the interface of
:class:`~.base.ImageDataset` that training and evaluation use (``len``, ``shape``, ``labels``,
``batch``, ``subset``, ``class_counts``, ``content_sha256``); ``shape`` is (T, 2, H, W).
"""

from __future__ import annotations

import hashlib
from typing import Optional, Union

import numpy as np
import torch

from ..errors import ConfigError, DatasetError
from .base import Indices, _as_index
from .events import EVENT_DTYPE, FrameSpec


class EventDataset:
    """Event streams with labels on a sensor of ``sensor`` = (H, W).

    Attributes:
        events: structured array of every sample's events, sample after sample (each time-sorted).
        offsets: int64 [N + 1]; sample i is ``events[offsets[i]:offsets[i + 1]]``.
        labels: int64 tensor [N].
        frames: the :class:`FrameSpec` that :meth:`batch` integrates with.
    """

    def __init__(self, events: np.ndarray, offsets: np.ndarray, labels: torch.Tensor, sensor: tuple[int, int],
                 frames: "FrameSpec | dict | None" = None) -> None:
        if events.dtype != EVENT_DTYPE:
            raise DatasetError(f"events must have dtype {EVENT_DTYPE}, got {events.dtype}")
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != events.shape[0] or np.any(np.diff(offsets) < 0):
            raise DatasetError("event offsets must rise from 0 to the number of events")
        if labels.dim() != 1 or labels.shape[0] != offsets.shape[0] - 1:
            raise DatasetError(f"{offsets.shape[0] - 1} event streams but {labels.shape[0]} labels")
        self.events, self.offsets = events, offsets
        self.labels = labels.to(torch.int64)
        self.sensor = (int(sensor[0]), int(sensor[1]))
        self.frames = FrameSpec() if frames is None else FrameSpec.from_dict(frames)

    @classmethod
    def from_streams(cls, streams: list[np.ndarray], labels, sensor: tuple[int, int],
                     frames: "FrameSpec | dict | None" = None) -> "EventDataset":
        """From one structured array per sample."""
        lengths = np.array([s.shape[0] for s in streams], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        events = np.concatenate(streams) if streams else np.empty(0, dtype=EVENT_DTYPE)
        return cls(events, offsets, torch.as_tensor(np.asarray(labels), dtype=torch.int64), sensor, frames)

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, 2, H, W) of one sample's frames."""
        return (self.frames.T, 2, *self.sensor)

    def with_frames(self, frames: "FrameSpec | dict") -> "EventDataset":
        """The same events read with another binning (no copy)."""
        return EventDataset(self.events, self.offsets, self.labels, self.sensor, frames)

    def stream(self, i: int) -> np.ndarray:
        """The events of sample ``i``."""
        return self.events[self.offsets[i]:self.offsets[i + 1]]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, _ = self.batch([i])
        return x[0], int(self.labels[i])

    def batch(self, indices: Indices,
              device: Optional[Union[str, torch.device]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [b, T, 2, H, W] float32 and labels int64 [b] of the given samples."""
        idx = _as_index(indices)
        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else idx.cpu().numpy()
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        frames = self._integrate(rows)
        x = torch.from_numpy(frames)
        y = self.labels[torch.from_numpy(rows)]
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return x, y

    def _integrate(self, rows: np.ndarray) -> np.ndarray:
        """Frames of samples ``rows``, all their events binned by one bincount (the per-sample
        equivalent of :func:`~.events.to_frames`, which the tests hold it to)."""
        spec, (H, W) = self.frames, self.sensor
        T = spec.T
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        B = rows.shape[0]
        total = int(lengths.sum())
        # every event of the batch: its sample (position in rows) and its index in self.events
        owner = np.repeat(np.arange(B, dtype=np.int64), lengths)
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)
        pos = np.arange(total, dtype=np.int64) - first  # index within its own stream
        src = np.repeat(starts, lengths) + pos
        ev = self.events[src]
        n = lengths[owner]
        if spec.by == "count":
            f = (pos * T) // np.maximum(n, 1)
        else:
            t = ev["t"].astype(np.int64)
            last = max(self.events.shape[0] - 1, 0)
            all_t = self.events["t"].astype(np.int64) if self.events.shape[0] else np.zeros(1, dtype=np.int64)
            # first and last time of each stream (clipped lookups: an empty stream owns no event)
            t0 = all_t[np.clip(starts, 0, last)]
            span = (all_t[np.clip(ends - 1, 0, last)] - t0)[owner]
            f = np.where(span > 0, ((t - t0[owner]) * T) // np.maximum(span, 1), 0)
            f = np.minimum(f, T - 1)
        flat = ((((owner * T + f) * 2 + ev["p"].astype(np.int64)) * H + ev["y"].astype(np.int64)) * W
                + ev["x"].astype(np.int64))
        counts = np.bincount(flat, minlength=B * T * 2 * H * W).reshape(B, T, 2, H, W)
        if spec.clip is not None:
            np.minimum(counts, spec.clip, out=counts)
        return counts.astype(np.float32)

    def subset(self, n_or_indices: Union[int, Indices]) -> "EventDataset":
        """The first ``n`` samples, or the samples at the given indices in that order."""
        if isinstance(n_or_indices, (int, np.integer)) and not isinstance(n_or_indices, bool):
            n = int(n_or_indices)
            if n < 0 or n > len(self):
                raise ConfigError(f"asked for {n} samples but this split has {len(self)}; use 0..{len(self)}")
            rows = np.arange(n)
        else:
            idx = _as_index(n_or_indices)
            rows = np.arange(len(self))[idx] if isinstance(idx, slice) else idx.cpu().numpy().astype(np.int64)
            if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
                raise ConfigError(f"subset indices out of range for a split of {len(self)} samples")
            rows = rows % max(len(self), 1)
        streams = [self.stream(int(i)) for i in rows]
        return EventDataset.from_streams(streams, self.labels[torch.from_numpy(rows)].numpy(), self.sensor,
                                         self.frames)

    def class_counts(self, num_classes: Optional[int] = None) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes or 0).tolist()

    def content_sha256(self) -> str:
        """sha256 over the events, their offsets and the labels in stored order."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.events).tobytes())
        h.update(self.offsets.astype("<i8").tobytes())
        h.update(self.labels.contiguous().numpy().astype("<i8").tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (f"EventDataset(n={len(self)}, sensor={self.sensor[1]}x{self.sensor[0]}, "
                f"events={self.events.shape[0]}, frames={self.frames})")
