"""The estimator registry and spec parsing (``bptt:atan:2``, ``hart:1.0``, dicts from ``to_dict``)."""

from __future__ import annotations

from typing import Any


from ..errors import ConfigError

from .base import GradientEstimator
from .bptt import BPTT, STE
from .bptr import BPTR
from .rga import RGA
from .hart import HART
from .pdsg import PDSG
from .assg import ASSG
from .source_ann import SourceANN
from .encoder_smooth import EncoderSmooth


# ---------------------------------------------------------------------------------------
# registry and parsing
# ---------------------------------------------------------------------------------------
ESTIMATOR_TYPES: dict[str, type[GradientEstimator]] = {
    c.name: c for c in (BPTT, STE, BPTR, RGA, HART, PDSG, ASSG, SourceANN, EncoderSmooth)
}

ESTIMATORS: dict[str, str] = {name: cls.description for name, cls in ESTIMATOR_TYPES.items()}


def _unknown(spec: Any) -> ConfigError:
    return ConfigError(
        f"unknown gradient estimator {spec!r}; choose one of: {', '.join(ESTIMATORS)} "
        f"(e.g. bptt:triangle:0.5, hart:1.0, assg:0.4)"
    )


def get_estimator(spec: "str | dict | GradientEstimator | None" = None) -> GradientEstimator:
    """Parse an estimator spec. Strings: ``bptt``, ``bptt:KIND:PARAM[:SCALE]``, ``ste``,
    ``bptr``, ``rga[:gamma[:beta[:tau]]]``, ``hart[:gamma]``, ``pdsg[:min_sigma]``, ``assg[:A[:r[:beta]]]``,
    ``source-ann`` (its ANN is bound by the evaluation, :meth:`SourceANN.bound`),
    ``encoder-smooth[:width]``.
    Dicts: ``{"name": ..., "params": {...}}`` (as written by ``to_dict``) or flat
    ``{"name": ..., **params}``. ``None`` is ``bptt``."""
    if spec is None:
        return BPTT()
    if isinstance(spec, GradientEstimator):
        return spec
    if isinstance(spec, dict):
        d = dict(spec)
        d.pop("label", None)
        name = str(d.pop("name", "")).lower()
        params = dict(d.pop("params", None) or {})
        params.update(d)
        cls = ESTIMATOR_TYPES.get(name)
        if cls is None:
            raise _unknown(spec.get("name"))
        if cls is STE:
            params.pop("surrogate", None)
        try:
            return cls(**params)
        except TypeError:
            import inspect

            allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise ConfigError(
                f"estimator {name}: bad parameter(s) {sorted(params)}; allowed: {', '.join(allowed) or 'none'}"
            ) from None
    if not isinstance(spec, str):
        raise ConfigError("gradient estimator must be a string like 'bptt:atan:2' or a dict, "
                          f"got {type(spec).__name__}")
    parts = [p.strip() for p in spec.strip().split(":")]
    name, args = parts[0].lower(), parts[1:]
    cls = ESTIMATOR_TYPES.get(name)
    if cls is None:
        raise _unknown(spec)
    if cls is BPTT:
        return BPTT(":".join(args) if args else None)
    if len(args) > len(cls.positional):
        form = ":".join([name] + list(cls.positional)) if cls.positional else name
        raise ConfigError(f"estimator '{spec}': too many fields; write {form}")
    return cls(**dict(zip(cls.positional, args)))
