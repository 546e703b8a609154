"""Every training-time defense by name: ``get_defense(name, **options)``, ``resolve_defense``
(TrainConfig's edge check), ``DEFENSES``.

    sr        Liu et al. 2024's gradient-sparsity regularizer            (sr.py)
    pgd-at    adversarial training with PGD, Madry et al. 2018           (pgd_at.py)
    fast-at   FGSM from a random start, Wong et al. 2020 (CPU choice)    (fast_at.py)
    rat       SNN-RAT, Ding et al. 2022: AT + weight orthogonality       (rat.py)
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import ConfigError
from .base import Defense
from .fast_at import FastAT
from .pgd_at import PGDAT
from .rat import RAT
from .sr import SR

DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (SR, PGDAT, FastAT, RAT)}


def _key(name: Any) -> str:
    return str(name).strip().lower().replace("_", "-")


def get_defense(name: str, **options: Any) -> Defense:
    """The defense ``name`` with validated ``options`` (unknown name or option: ConfigError)."""
    key = _key(name)
    if key not in DEFENSES:
        raise ConfigError(f"config 'defense': unknown defense {name!r}; choose one of: "
                          f"{', '.join(DEFENSES)} (or none)")
    return DEFENSES[key](**options)


def resolve_defense(spec: Any) -> Optional[dict]:
    """A TrainConfig ``defense`` value -> ``{"name": ..., **every setting resolved}`` or None.
    Accepts None / "none", a name ("sr"), or a mapping ``{name: ..., <options>}``."""
    if spec is None or (isinstance(spec, str) and _key(spec) == "none"):
        return None
    if isinstance(spec, str):
        return get_defense(spec).to_dict()
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError("config 'defense' must be a defense name or a mapping with a 'name' "
                          f"({', '.join(DEFENSES)}) and its options, got {spec!r}")
    opts = dict(spec)
    name = opts.pop("name")
    if _key(name) == "none":
        if opts:
            raise ConfigError(f"config 'defense': none takes no options, got {', '.join(sorted(opts))}")
        return None
    return get_defense(name, **opts).to_dict()


def defense_from_config(spec: Optional[dict]) -> Optional[Defense]:
    """The Defense object of a resolved config value (None: plain training)."""
    if spec is None:
        return None
    opts = dict(spec)
    return get_defense(opts.pop("name"), **opts)


def describe_defense(spec: Optional[dict], method: str = "bptt") -> str:
    """One line for ``eval`` and the trainer: the defense and every setting, or that there was none."""
    if spec is None:
        return f"none (plain {'BPTT' if method in ('bptt', 'hybrid') else 'training'})"
    try:
        return defense_from_config(spec).describe()  # type: ignore[union-attr]
    except ConfigError:  # written by another snnrobust version: show what is stored
        return ", ".join(f"{k} {v}" for k, v in spec.items())
