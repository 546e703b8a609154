"""Content hashes that key the results store.

A result is identified by *what was run* — the checkpoint file's bytes and the full
configuration — never by file names or timestamps, so a renamed checkpoint still hits
the cache and a changed epsilon never does.

``canonical_json`` defines the one text form of a configuration: keys sorted, no
whitespace, floats written as Python's shortest round-trip ``repr`` (``0.1`` -> ``0.1``),
tuples written as lists. Anything that is not plain JSON (sets, tensors, paths, objects,
NaN) is rejected with a :class:`ConfigError` naming where it sits, because silently
stringifying it would make two different configs hash alike (or one config hash
differently between runs).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from ..errors import ConfigError


def _where(path: str) -> str:
    return path or "<top level>"


def to_json_value(obj: Any, *, allow_nan: bool = False, _path: str = "") -> Any:
    """Return ``obj`` as plain JSON types (dict[str, ...], list, str, int, float, bool, None).

    Tuples become lists; numpy scalars become Python numbers. Raises :class:`ConfigError`
    naming the key path (e.g. ``model.layers[2]``) of the first value that is not JSON.
    Non-finite floats are rejected unless ``allow_nan`` (payloads may carry NaN metrics;
    configs may not, since NaN != NaN would make a config unequal to itself).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not allow_nan and not math.isfinite(obj):
            raise ConfigError(
                f"value at {_where(_path)} is {obj!r}, which has no JSON form; use a finite number or null"
            )
        return float(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ConfigError(
                    f"key {k!r} at {_where(_path)} is a {type(k).__name__}; JSON keys must be strings"
                )
            out[k] = to_json_value(v, allow_nan=allow_nan, _path=f"{_path}.{k}" if _path else k)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v, allow_nan=allow_nan, _path=f"{_path}[{i}]") for i, v in enumerate(obj)]
    # numpy scalars (np.int64, np.float32, np.bool_) without importing numpy here.
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return to_json_value(obj.item(), allow_nan=allow_nan, _path=_path)
    raise ConfigError(
        f"value at {_where(_path)} is a {type(obj).__name__}, which is not JSON; "
        "convert it to a dict, list, string, number, bool or null"
    )


def canonical_json(obj: Any) -> str:
    """The canonical text of a configuration: sorted keys, no whitespace, floats as repr."""
    return json.dumps(
        to_json_value(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def config_hash(obj: Any) -> str:
    """Hex sha256 of :func:`canonical_json` (UTF-8). Key order never matters; any value change does."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
