"""Loading CIFAR's python pickles without letting them run code.

A pickle can name any importable callable (``os.system``...) and call it on load. The
:class:`RestrictedUnpickler` resolves only the handful of globals that a real CIFAR
pickle uses to rebuild numpy arrays; any other global aborts the load before it is
imported, let alone called.
"""

from __future__ import annotations

import codecs
import io
import pickle
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DatasetError


def _numpy_private(module: str, name: str) -> Callable[[], Any]:
    """Look up a numpy-internal helper lazily, under numpy 2 (numpy._core) or numpy 1 (numpy.core)."""

    def get() -> Any:
        import importlib

        for mod in (f"numpy._core.{module}", f"numpy.core.{module}"):
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"this numpy has no {module}.{name}")

    return get


_reconstruct = _numpy_private("multiarray", "_reconstruct")
_frombuffer = _numpy_private("numeric", "_frombuffer")

# (module, name) as written in the pickle -> the object it may resolve to.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    # ndarray reconstruction (protocol <= 4): _reconstruct(ndarray, (0,), b'b') then __setstate__
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    # protocol 5 arrays: _frombuffer(buffer, dtype, shape, order)
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') under protocol 2
    ("_codecs", "encode"): lambda: codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        getter = ALLOWED_GLOBALS.get((module, name))
        if getter is None:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return getter()


def load_restricted(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only numpy-array globals.

    Python 2 pickles (the official CIFAR files) are read with encoding "latin1", the
    encoding numpy needs to rebuild their arrays; their str keys come back as str.
    Anything forbidden, truncated or otherwise unreadable -> DatasetError naming the file.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DatasetError(f"{path} was refused or is not a valid pickle ({e}); "
                           "replace it with the official file") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, struct.error) as e:
        raise DatasetError(f"{path} is truncated or not a CIFAR pickle ({type(e).__name__}: {e}); "
                           "get it again") from None
