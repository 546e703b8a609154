"""An event-camera emulator: static images seen through sensor saccades (N-MNIST-like events).

N-MNIST (Orchard et al. 2015) was recorded by moving an ATIS sensor in three saccades along
a triangle in front of MNIST digits on a monitor. This module emulates that from the
pixels, so the whole event pipeline runs on the embedded mnist5k with no download. **It is an
emulation, not N-MNIST**: no sensor noise model beyond what is listed, no optics, no monitor
refresh.

The model, per image (pixels in [0, 1], padded by ``pad`` pixels to the sensor size, e.g.
28 -> 34 as N-MNIST):

1. **Motion**: the image is shifted by (dx(t), dy(t)) along the closed triangle
   (0, 0) -> (A/2, A) -> (A, 0) -> (0, 0), one saccade of ``saccade_us`` microseconds per edge,
   sampled every ``dt_us``; shifted intensities come from bilinear interpolation (zero outside
   the image).
2. **Log intensity**: L = log(I + ``bias``).
3. **DVS pixel**: each pixel holds a reference level r (L at t = 0) and a contrast threshold
   C_ij = ``threshold`` x (1 + ``mismatch`` N(0, 1)) (fixed per pixel, the sensor's threshold
   mismatch, drawn once per ``seed``: the same sensor sees every image). At each sample it
   emits floor((L - r) / C) ON events or floor((r - L) / C) OFF
   events and moves r by that many thresholds. Event times are the sample time plus a uniform
   jitter within the sample.
4. **Background activity**: ``noise_hz`` spurious events per pixel and second, uniform in time
   and polarity.

Because the path is closed and r moves in whole thresholds, every pixel ends within one
threshold of where it started: its ON and OFF counts differ by at most one (without noise).
All randomness comes from ``seed`` (and the image's index, so each image's stream is the same
whichever batch it is emulated in).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from .events import make_events


@dataclass(frozen=True)
class SaccadeEmulator:
    """Settings of the emulator (units: pixels, microseconds, log-intensity)."""

    pad: int = 3
    amplitude: float = 2.0
    saccade_us: int = 100_000
    dt_us: int = 1_000
    threshold: float = 0.25
    mismatch: float = 0.05
    bias: float = 0.1
    noise_hz: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pad < 0 or self.amplitude < 0 or self.dt_us < 1 or self.saccade_us < self.dt_us:
            raise ConfigError("saccade emulator: pad and amplitude must be >= 0 and saccade_us >= dt_us >= 1")
        if not (self.threshold > 0 and self.bias > 0 and 0 <= self.mismatch < 0.5 and self.noise_hz >= 0):
            raise ConfigError("saccade emulator: threshold and bias must be > 0, mismatch in [0, 0.5), noise_hz >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    # -- motion ----------------------------------------------------------------------------
    def path(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times [S] in us, dx [S], dy [S]): the closed triangle sampled every ``dt_us``."""
        a = self.amplitude
        corners = np.array([[0.0, 0.0], [a / 2, a], [a, 0.0], [0.0, 0.0]])
        per = self.saccade_us // self.dt_us
        frac = np.arange(per) / per
        pts = [corners[i] + frac[:, None] * (corners[i + 1] - corners[i]) for i in range(3)]
        pts.append(corners[-1:])
        xy = np.concatenate(pts)
        times = np.arange(xy.shape[0], dtype=np.int64) * self.dt_us
        return times, xy[:, 0], xy[:, 1]

    def sensor_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return image_hw[0] + 2 * self.pad, image_hw[1] + 2 * self.pad

    # -- emulation ----------------------------------------------------------------------------
    def events(self, images: np.ndarray, first_index: int = 0) -> list[np.ndarray]:
        """Event streams of ``images`` [B, H, W] (float pixels in [0, 1]; one channel), one
        structured array per image on a sensor of :meth:`sensor_size`. ``first_index`` is the
        dataset index of ``images[0]``: it keys each image's random draws."""
        imgs = np.asarray(images, dtype=np.float64)
        if imgs.ndim != 3 or imgs.min() < 0 or imgs.max() > 1:
            raise ConfigError("saccade emulator: images must be [B, H, W] with pixels in [0, 1]")
        B = imgs.shape[0]
        p = self.pad
        canvas = np.pad(imgs, ((0, 0), (p, p), (p, p)))
        H, W = canvas.shape[1:]
        times, dx, dy = self.path()
        # the threshold mismatch is the sensor's (one draw per seed, the same for every image); the
        # timing jitter and noise are each image's own (keyed by its index)
        sensor = np.random.default_rng([self.seed, 2**31])
        th = self.threshold * (1 + self.mismatch * sensor.standard_normal((H, W)))
        th = np.maximum(th, self.threshold * 0.25)[None].repeat(B, 0)
        rngs = [np.random.default_rng([self.seed, first_index + i]) for i in range(B)]
        ref = np.log(canvas + self.bias)
        chunks: list[np.ndarray] = []  # rows (image, sample time, x, y, polarity) per time sample
        for k in range(1, times.shape[0]):
            level = np.log(_shifted(canvas, dx[k], dy[k]) + self.bias)
            n_on = np.maximum(np.floor((level - ref) / th), 0)
            n_off = np.maximum(np.floor((ref - level) / th), 0)
            ref += (n_on - n_off) * th
            n = (n_on + n_off).astype(np.int64)
            b, y, x = np.nonzero(n)
            if b.size:
                reps = n[b, y, x]
                pol = (n_on[b, y, x] > 0).astype(np.int64)
                rows = np.stack([b, np.full(b.shape, times[k]), x, y, pol], 1)
                chunks.append(np.repeat(rows, reps, axis=0))
        allrows = np.concatenate(chunks) if chunks else np.zeros((0, 5), dtype=np.int64)
        allrows = allrows[np.argsort(allrows[:, 0], kind="stable")]
        per_image = np.split(allrows, np.cumsum(np.bincount(allrows[:, 0], minlength=B))[:-1])
        out = []
        span = int(times[-1]) + self.dt_us
        for ev, rng in zip(per_image, rngs):
            # each event at a uniform time inside the interval that ends at its sample
            t = ev[:, 1] - self.dt_us + rng.integers(0, self.dt_us, ev.shape[0])
            x, y, pol = ev[:, 2], ev[:, 3], ev[:, 4]
            if self.noise_hz > 0:
                n_noise = rng.poisson(self.noise_hz * H * W * span / 1e6)
                t = np.concatenate([t, rng.integers(0, span, n_noise)])
                x = np.concatenate([x, rng.integers(0, W, n_noise)])
                y = np.concatenate([y, rng.integers(0, H, n_noise)])
                pol = np.concatenate([pol, rng.integers(0, 2, n_noise)])
            out.append(make_events(t, x, y, pol))
        return out


def _shifted(canvas: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """canvas [B, H, W] moved by (dx, dy) pixels (bilinear; zero where nothing is seen)."""
    B, H, W = canvas.shape
    ix, fx = int(np.floor(dx)), dx - np.floor(dx)
    iy, fy = int(np.floor(dy)), dy - np.floor(dy)
    out = np.zeros_like(canvas)
    for oy, wy in ((iy, 1 - fy), (iy + 1, fy)):
        for ox, wx in ((ix, 1 - fx), (ix + 1, fx)):
            w = wy * wx
            if w == 0:
                continue
            # out[y, x] += w * canvas[y - oy, x - ox]
            ys, yd = (slice(0, H - oy), slice(oy, H)) if oy >= 0 else (slice(-oy, H), slice(0, H + oy))
            xs, xd = (slice(0, W - ox), slice(ox, W)) if ox >= 0 else (slice(-ox, W), slice(0, W + ox))
            out[:, yd, xd] += w * canvas[:, ys, xs]
    return out
