"""Readers and writers of the native event-camera file formats, vectorised with numpy.

- **N-MNIST / N-Caltech101 ``.bin``** (ATIS sensor, Orchard et al. 2015): 5 bytes per event,
  big-endian bit fields: bits 39-32 x, 31-24 y, bit 23 polarity (1 = ON), bits 22-0 time in
  microseconds. No header.
- **AEDAT 3.1** (DVS128 Gesture, Amir et al. 2017): text header lines starting with ``#``
  (the first ``#!AER-DAT3.1``), ending with ``#!END-HEADER\\r\\n``; then packets, each a
  28-byte little-endian header (int16 event type, int16 source, int32 event size, int32
  timestamp offset, int32 timestamp overflow, int32 capacity, int32 number, int32 valid)
  followed by ``capacity`` events of ``event size`` bytes. Polarity events (type 1) are 8
  bytes: uint32 data (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and int32
  timestamp; the full time is ``overflow << 31 | timestamp``. Other packet types are skipped.
- **AEDAT 2.0 with DVS128 addresses** (CIFAR10-DVS, Li et al. 2017; jAER's format): header
  lines starting with ``#``, then big-endian (uint32 address, uint32 timestamp) pairs. Address
  bit 0 is the polarity, bits 1-7 x, bits 8-14 y; bit 31 set marks a non-DVS event (dropped).
  Read with SpikingJelly's orientation (x = 127 - address y, y = 127 - address x, p = 1 -
  address polarity) so frames look the same as in the literature that used it.

Each reader raises :class:`~snnrobust.errors.DatasetError` with one line naming the file and
what is wrong. The writers exist so tests (and exports of emulated data) produce the same bytes
the recording software does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import DatasetError
from .events import EVENT_DTYPE, make_events

PathLike = Union[str, "os.PathLike[str]"]

AEDAT31_MAGIC = b"#!AER-DAT3.1"
AEDAT2_MAGIC = b"#!AER-DAT2.0"
END_HEADER = b"#!END-HEADER\r\n"
POLARITY_EVENT = 1
_PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                           ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
_POLARITY = np.dtype([("data", "<u4"), ("ts", "<i4")])


def _read(path: PathLike, how_to_get: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}; {how_to_get}") from None


# -- N-MNIST .bin --------------------------------------------------------------------------
NMNIST_HELP = "get N-MNIST (Train/ and Test/ folders of .bin files) from https://www.garrickorchard.com/datasets/n-mnist"


def read_nmnist_bin(path: PathLike) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file (structured :data:`EVENT_DTYPE`, sorted by time)."""
    raw = _read(path, NMNIST_HELP)
    if len(raw) % 5:
        raise DatasetError(f"{path} is not an N-MNIST .bin file ({len(raw)} bytes, not a multiple of the 5 bytes "
                           f"per event); {NMNIST_HELP}")
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    return make_events(t, b[:, 0], b[:, 1], b[:, 2] >> 7)


def write_nmnist_bin(path: PathLike, events: np.ndarray) -> None:
    """Write events in the N-MNIST ``.bin`` layout (x, y < 256; t < 2**23 microseconds)."""
    t, x, y, p = (events[k].astype(np.int64) for k in ("t", "x", "y", "p"))
    if events.shape[0] and (t.min() < 0 or t.max() >= 1 << 23 or x.max() > 255 or y.max() > 255
                            or min(x.min(), y.min()) < 0):
        raise ValueError("N-MNIST .bin holds x, y in 0..255 and t in 0..2**23-1 microseconds")
    out = np.empty((events.shape[0], 5), dtype=np.uint8)
    out[:, 0], out[:, 1] = x, y
    out[:, 2] = (p << 7) | (t >> 16)
    out[:, 3], out[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    Path(path).write_bytes(out.tobytes())


# -- AEDAT headers ---------------------------------------------------------------------------
def _split_header(raw: bytes, path: PathLike, magic: bytes, end_marker: bool, how_to_get: str) -> int:
    """Offset of the first data byte after the ``#`` header lines."""
    if not raw.startswith(magic):
        got = raw[:16].split(b"\n")[0].decode("latin-1", "replace").strip() or "no header"
        raise DatasetError(f"{path} is not an {magic[2:].decode()} file (starts with {got!r}); {how_to_get}")
    pos = 0
    while pos < len(raw) and raw[pos:pos + 1] == b"#":
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise DatasetError(f"{path}: the header never ends (truncated file?); {how_to_get}")
        line = raw[pos:nl + 1]
        pos = nl + 1
        if end_marker and line == END_HEADER:
            return pos
    if end_marker:
        raise DatasetError(f"{path}: no #!END-HEADER line (truncated or not AEDAT 3.1); {how_to_get}")
    return pos


# -- AEDAT 3.1 (DVS128 Gesture) ------------------------------------------------------------
GESTURE_HELP = ("get DVS128 Gesture (DvsGesture/ with user*.aedat, user*_labels.csv, trials_to_train.txt and "
                "trials_to_test.txt) from IBM Research")


def read_aedat31(path: PathLike) -> np.ndarray:
    """The valid polarity events of an AEDAT 3.1 file, sorted by time."""
    raw = _read(path, GESTURE_HELP)
    pos = _split_header(raw, path, AEDAT31_MAGIC, True, GESTURE_HELP)
    parts = []
    hsize = _PACKET_HEADER.itemsize
    while pos < len(raw):
        if pos + hsize > len(raw):
            raise DatasetError(f"{path}: truncated packet header at byte {pos}; {GESTURE_HELP}")
        h = np.frombuffer(raw, dtype=_PACKET_HEADER, count=1, offset=pos)[0]
        size, capacity, number = int(h["size"]), int(h["capacity"]), int(h["number"])
        end = pos + hsize + capacity * size
        if size <= 0 or capacity < 0 or not 0 <= number <= capacity or end > len(raw):
            raise DatasetError(f"{path}: corrupt packet at byte {pos} (event size {size}, capacity {capacity}, "
                               f"number {number}); {GESTURE_HELP}")
        if int(h["type"]) == POLARITY_EVENT:
            if size != _POLARITY.itemsize:
                raise DatasetError(f"{path}: polarity events of {size} bytes at byte {pos} (AEDAT 3.1 has 8); "
                                   f"{GESTURE_HELP}")
            ev = np.frombuffer(raw, dtype=_POLARITY, count=number, offset=pos + hsize)
            ev = ev[(ev["data"] & 1).astype(bool)]
            t = (np.int64(h["ts_overflow"]) << 31) | ev["ts"].astype(np.int64)
            d = ev["data"].astype(np.int64)
            parts.append(make_events(t, (d >> 17) & 0x7FFF, (d >> 2) & 0x7FFF, (d >> 1) & 1))
        pos = end
    if not parts:
        return np.empty(0, dtype=EVENT_DTYPE)
    out = np.concatenate(parts)
    return out if np.all(np.diff(out["t"]) >= 0) else out[np.argsort(out["t"], kind="stable")]


def write_aedat31(path: PathLike, events: np.ndarray, packet_size: int = 4096,
                  header_lines: tuple[str, ...] = ("#Format: RAW", "#Source 1: DVS128")) -> None:
    """Write polarity events as AEDAT 3.1 (packets of ``packet_size`` events, timestamps split
    into overflow and 31-bit parts as the recorder does)."""
    t = events["t"].astype(np.int64)
    data = ((events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2)
            | (events["p"].astype(np.uint32) << 1) | 1)
    chunks = [AEDAT31_MAGIC + b"\r\n"] + [line.encode() + b"\r\n" for line in header_lines] + [END_HEADER]
    overflow = t >> 31
    start = 0
    while start < t.shape[0]:
        # a packet holds events of one overflow epoch
        stop = min(start + packet_size, t.shape[0])
        stop = start + int(np.searchsorted(overflow[start:stop], overflow[start], side="right"))
        n = stop - start
        h = np.zeros(1, dtype=_PACKET_HEADER)
        h["type"], h["source"], h["size"], h["ts_offset"] = POLARITY_EVENT, 1, 8, 4
        h["ts_overflow"], h["capacity"], h["number"], h["valid"] = overflow[start], n, n, n
        ev = np.empty(n, dtype=_POLARITY)
        ev["data"], ev["ts"] = data[start:stop], t[start:stop] & 0x7FFFFFFF
        chunks += [h.tobytes(), ev.tobytes()]
        start = stop
    Path(path).write_bytes(b"".join(chunks))


def read_gesture_labels(path: PathLike) -> np.ndarray:
    """Rows (class 1..11, start, end) in microseconds of a DVS128 Gesture ``*_labels.csv``."""
    try:
        text = Path(path).read_text().strip().splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}; {GESTURE_HELP}") from None
    if not text or text[0].replace(" ", "").lower() != "class,starttime_usec,endtime_usec":
        raise DatasetError(f"{path}: expected the header 'class,startTime_usec,endTime_usec'; {GESTURE_HELP}")
    try:
        rows = np.array([[int(v) for v in line.split(",")] for line in text[1:] if line.strip()], dtype=np.int64)
    except ValueError:
        raise DatasetError(f"{path}: a label row is not three integers; {GESTURE_HELP}") from None
    rows = rows.reshape(-1, 3)
    if rows.size and (rows[:, 0].min() < 1 or rows[:, 0].max() > 11 or np.any(rows[:, 2] <= rows[:, 1])):
        raise DatasetError(f"{path}: classes must be 1..11 and every end after its start; {GESTURE_HELP}")
    return rows


def write_gesture_labels(path: PathLike, rows: np.ndarray) -> None:
    lines = ["class,startTime_usec,endTime_usec"] + [f"{int(c)},{int(s)},{int(e)}" for c, s, e in rows]
    Path(path).write_text("\n".join(lines) + "\n")


# -- AEDAT 2.0 with DVS128 addresses (CIFAR10-DVS) ------------------------------------------
CIFAR10DVS_HELP = ("get CIFAR10-DVS (one folder per class: airplane/ ... truck/, 1,000 .aedat files each) from "
                   "its figshare page (Li et al. 2017)")
DVS128_SIZE = 128


def read_aedat2_dvs128(path: PathLike) -> np.ndarray:
    """The DVS events of a jAER AEDAT 2.0 file from a DVS128 (CIFAR10-DVS), sorted by time."""
    raw = _read(path, CIFAR10DVS_HELP)
    pos = _split_header(raw, path, AEDAT2_MAGIC, False, CIFAR10DVS_HELP)
    body = len(raw) - pos
    if body % 8:
        raise DatasetError(f"{path}: {body} data bytes, not whole 8-byte events (truncated?); {CIFAR10DVS_HELP}")
    words = np.frombuffer(raw, dtype=">u4", offset=pos).astype(np.int64).reshape(-1, 2)
    addr, t = words[:, 0], words[:, 1]
    keep = (addr >> 31) == 0
    addr, t = addr[keep], t[keep]
    ax, ay, ap = (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, addr & 1
    return make_events(t, 127 - ay, 127 - ax, 1 - ap)


def write_aedat2_dvs128(path: PathLike, events: np.ndarray) -> None:
    """Write events (in :func:`read_aedat2_dvs128`'s orientation) as jAER AEDAT 2.0."""
    x, y, p = (events[k].astype(np.int64) for k in ("x", "y", "p"))
    ax, ay, ap = 127 - y, 127 - x, 1 - p
    words = np.empty((events.shape[0], 2), dtype=">u4")
    words[:, 0] = (ay << 8) | (ax << 1) | ap
    words[:, 1] = events["t"].astype(np.int64)
    header = AEDAT2_MAGIC + b"\r\n# This is a raw AE data file - do not edit\r\n# AEChip: DVS128\r\n"
    Path(path).write_bytes(header + words.tobytes())
