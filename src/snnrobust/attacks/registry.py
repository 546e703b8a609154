"""Every attack by name: ``get_attack(name, **options)``, ``list_attacks()``, ``ATTACKS``.

    fgsm, rfgsm, pgd, mifgsm, sapgd         our implementations (gradients via victim.grad)
    apgd-ce, apgd-dlr, apgd-t, fab-t, square  the official AutoAttack code (PyPI pyautoattack)
    noise                                   random-noise baseline at the same eps
    transfer                                crafted on source models, scored on the target

Options are validated when the attack is built; an unknown name or option is a one-line
ConfigError naming what exists.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .autoattack import APGDCE, APGDDLR, APGDT, FABT, Square
from .base import Attack
from .fgsm import FGSM, RFGSM
from .mifgsm import MIFGSM
from .noise import Noise
from .pgd import PGD
from .sapgd import SAPGD
from .transfer import Transfer

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (FGSM, RFGSM, PGD, MIFGSM, SAPGD, APGDCE, APGDDLR, APGDT, FABT, Square, Noise,
                Transfer)
}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def get_attack(name: str, **options: Any) -> Attack:
    """Build the attack called ``name`` with validated ``options``."""
    key = _key(name)
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack '{name}'; choose one of: {', '.join(ATTACKS)}")
    return ATTACKS[key](**options)


def list_attacks() -> dict[str, str]:
    """name -> one-line description, in registry order."""
    return {name: cls.description for name, cls in ATTACKS.items()}


def attack_options(name: str) -> list[str]:
    """The option names an attack accepts."""
    key = _key(name)
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack '{name}'; choose one of: {', '.join(ATTACKS)}")
    return ATTACKS[key].option_names()
