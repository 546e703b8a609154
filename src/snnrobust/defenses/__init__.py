"""Training-time defenses, composable with any model, encoder and training method.

- :mod:`.base` — the :class:`Defense` hooks the trainer calls, option checks, BN-statistics guard.
- :mod:`.adversarial` — crafting adversarial training batches through a ``Victim``
  (attacker-chosen gradient estimator, EOT for stochastic encoders).
- :mod:`.sr`, :mod:`.pgd_at`, :mod:`.fast_at`, :mod:`.rat` — one defense each.
- :mod:`.registry` — by name; :func:`resolve_defense` is TrainConfig's edge check.
- :mod:`.cost` — a timed plain step, for the extra cost per epoch the trainer prints.

Use: ``TrainConfig(defense={"name": "fast-at", "eps": 0.1})`` or
``snnrobust train --defense fast-at -d eps=0.1``.
"""

from .base import Defense
from .registry import DEFENSES, defense_from_config, describe_defense, get_defense, resolve_defense

__all__ = ["DEFENSES", "Defense", "defense_from_config", "describe_defense", "get_defense", "resolve_defense"]
