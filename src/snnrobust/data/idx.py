"""Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed.

Layout: two zero bytes, a dtype code byte, the number of dimensions d, then d big-endian
uint32 sizes, then the payload (row-major, big-endian items). The payload must hold
exactly prod(sizes) items; anything else is a truncated or foreign file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DatasetError

# dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DatasetError(f"{path} is not a complete gzip file ({e}); delete it and get it again") from None
    return path.read_bytes()


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian array of the shape in the header."""
    if len(data) < 4:
        raise DatasetError(f"{name} is too short to be an IDX file ({len(data)} bytes); get the file again")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{name} is not an IDX file (bad magic number 0x{data[:4].hex()}); expected 0x0000 then a "
            "dtype code and the number of dimensions"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{name} is truncated inside its IDX header; get the file again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DatasetError(
            f"{name} is {what}: header {list(dims)} needs {expected} payload bytes, found {got}; get the file again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` decompressed on the fly); DatasetError naming the file if malformed."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))
