"""Every attack by name: ``get_attack(name, **options)``, ``list_attacks()``, ``ATTACKS``.

    fgsm, rfgsm, pgd, mifgsm, sapgd         our implementations (gradients via victim.grad)
    square                                  our Square attack (score-based; windows drawn per sample)
    apgd-ce, apgd-dlr, apgd-t, fab-t        the official AutoAttack code (PyPI pyautoattack)
    square-aa                               AutoAttack's official Square, for cross-checks
    noise                                   random-noise baseline at the same eps (L0: k random flips)
    eventflip, retime                       attacks on binary event frames: insert/delete k events (L0),
                                            move every event by <= k frames (retiming)
    transfer                                crafted on source models, scored on the target

Options are validated when the attack is built; an unknown name or option is a one-line
ConfigError naming what exists. What the evaluation needs to know about an attack (its kind,
which options set its steps and restarts) is declared on its class and read here
(:func:`attack_kind`, :func:`attack_budget`, :func:`with_budget`), never guessed from its name.
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import ConfigError
from .autoattack import APGDCE, APGDDLR, APGDT, FABT, SquareAA
from .base import Attack
from .eventflip import EventFlip, EventRetime
from .fgsm import FGSM, RFGSM
from .mifgsm import MIFGSM
from .noise import Noise
from .pgd import PGD
from .sapgd import SAPGD
from .square import Square
from .transfer import Transfer

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (FGSM, RFGSM, PGD, MIFGSM, SAPGD, APGDCE, APGDDLR, APGDT, FABT, Square, SquareAA, Noise,
                Transfer, EventFlip, EventRetime)
}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def get_attack(name: str, **options: Any) -> Attack:
    """Build the attack called ``name`` with validated ``options``."""
    return attack_class(name)(**options)


def attack_class(name: str) -> type[Attack]:
    """The class of the attack called ``name`` (its declared ``kind``, ``steps_option``,
    ``restarts_option``, ``fixed_steps``)."""
    key = _key(name)
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack '{name}'; choose one of: {', '.join(ATTACKS)}")
    return ATTACKS[key]


def attack_kind(name: str) -> str:
    """The declared kind of the attack called ``name`` (one of ``ATTACK_KINDS``)."""
    return attack_class(name).kind


def attack_budget(settings: dict) -> tuple[Optional[int], Optional[int]]:
    """(steps, restarts) of a run from its recorded settings ``{"name": ..., **options}`` (an
    attack's ``to_dict()``), read through the options its class declares."""
    return attack_class(settings["name"]).budget(settings)


def with_budget(name: str, options: dict, steps: Optional[int], restarts: Optional[int]) -> dict:
    """``options`` of the attack ``name`` with ``steps`` / ``restarts`` (None: unchanged) set on
    the options it declares; a one-line ConfigError when it has none to set."""
    return attack_class(name).with_budget(options, steps, restarts)


def list_attacks() -> dict[str, str]:
    """name -> one-line description, in registry order."""
    return {name: cls.description for name, cls in ATTACKS.items()}


def attack_options(name: str) -> list[str]:
    """The option names an attack accepts."""
    return attack_class(name).option_names()
