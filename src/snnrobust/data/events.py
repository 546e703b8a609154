"""Event streams and their integration into frames.

An event camera reports, per pixel, when the log intensity changed by more than a threshold:
an event is (t, x, y, p) with t in microseconds, x in [0, W), y in [0, H) and polarity p in
{0 = OFF, 1 = ON}. A stream is held as a numpy structured array of :data:`EVENT_DTYPE`, sorted
by time.

:func:`to_frames` integrates a stream into T frames [T, 2, H, W] (channel 0 = OFF, 1 = ON) so
that the frame-based architectures (SEW-ResNet, VGG) train on events with BPTT:

- ``by="time"``: equal time bins over the stream's span [t_first, t_last];
- ``by="count"``: equal numbers of events per frame (the first ``n mod T`` frames hold one
  more).

Every event lands in exactly one frame, so the frames sum to the stream's event count (the
counts are kept; :class:`FrameSpec` ``clip`` turns them into binary "an event happened in this
slot" frames). All of it is vectorised: no per-event Python loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..errors import ConfigError

#: One event: time in microseconds, pixel column x, pixel row y, polarity (0 OFF, 1 ON).
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])

BINNINGS = ("time", "count")


def make_events(t, x, y, p) -> np.ndarray:
    """A structured event array from four equal-length sequences, stably sorted by time."""
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    n = t.shape[0]
    if not (x.shape[0] == y.shape[0] == p.shape[0] == n):
        raise ConfigError(f"events: t, x, y and p must have the same length, got {n}, {x.shape[0]}, "
                          f"{y.shape[0]}, {p.shape[0]}")
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    if n and np.any(np.diff(ev["t"]) < 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


@dataclass(frozen=True)
class FrameSpec:
    """How a stream becomes frames: ``T`` frames, binned ``by`` "time" or "count", and
    ``clip`` (1, the default: binary, "an event happened in this slot"; None: event counts)."""

    T: int = 10
    by: str = "time"
    clip: Optional[int] = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.T, int) and self.T >= 1):
            raise ConfigError(f"frames: T must be a positive integer, got {self.T!r}")
        if self.by not in BINNINGS:
            raise ConfigError(f"frames: by must be one of {', '.join(BINNINGS)}, got {self.by!r}")
        if self.clip is not None and not (isinstance(self.clip, int) and self.clip >= 1):
            raise ConfigError(f"frames: clip must be a positive integer or null, got {self.clip!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: "dict | FrameSpec") -> "FrameSpec":
        if isinstance(d, FrameSpec):
            return d
        unknown = set(d) - {"T", "by", "clip"}
        if unknown:
            raise ConfigError(f"frames: unknown key(s) {sorted(unknown)}; use T, by, clip")
        return FrameSpec(**d)


def frame_index(t: np.ndarray, T: int, by: str) -> np.ndarray:
    """The frame (0..T-1) of each event of a time-sorted stream with times ``t`` [n]."""
    n = t.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if by == "count":
        # event i goes to frame floor(i * T / n): sizes differ by at most one
        return (np.arange(n, dtype=np.int64) * T) // n
    t0, span = int(t[0]), int(t[-1]) - int(t[0])
    if span == 0:
        return np.zeros(n, dtype=np.int64)
    # T equal bins over [t0, t_last]; the last event closes the last bin
    return np.minimum(((t.astype(np.int64) - t0) * T) // span, T - 1)


def to_frames(events: np.ndarray, size: tuple[int, int], spec: FrameSpec) -> np.ndarray:
    """Integrate ``events`` (structured, time-sorted) on a sensor of ``size`` = (H, W) into
    frames [T, 2, H, W] (int32 counts, or counts clipped at ``spec.clip``). Events outside the
    sensor raise :class:`ConfigError`."""
    H, W = size
    x, y, p = (events[k].astype(np.int64) for k in ("x", "y", "p"))
    if events.shape[0] and (x.min() < 0 or y.min() < 0 or x.max() >= W or y.max() >= H
                            or p.min() < 0 or p.max() > 1):
        raise ConfigError(f"events outside a {W}x{H} sensor (x in [{x.min()}, {x.max()}], y in "
                          f"[{y.min()}, {y.max()}], p in [{p.min()}, {p.max()}])")
    f = frame_index(events["t"], spec.T, spec.by)
    flat = ((f * 2 + p) * H + y) * W + x
    frames = np.bincount(flat, minlength=spec.T * 2 * H * W).astype(np.int32).reshape(spec.T, 2, H, W)
    if spec.clip is not None:
        np.minimum(frames, spec.clip, out=frames)
    return frames


def frames_for_model(model) -> Optional[dict]:
    """The binning an event dataset must be read with for ``model`` (a model, or its config as
    a ModelConfig or dict): its ``frames`` encoder's T, by and clip; None for any other encoder
    (images)."""
    enc = getattr(model, "encoder", None)
    if enc is not None and not isinstance(enc, str):
        spec = getattr(enc, "spec", None)
        return spec.to_dict() if isinstance(spec, FrameSpec) else None
    cfg = model if isinstance(model, dict) else vars(model) if hasattr(model, "__dict__") else {}
    if cfg.get("encoder") != "frames":
        return None
    from ..models.config import ModelConfig

    opts = dict(cfg.get("encoder_options") or {})
    return FrameSpec(T=int(cfg.get("T", ModelConfig.T)), by=opts.get("by", "time"), clip=opts.get("clip", 1)).to_dict()
