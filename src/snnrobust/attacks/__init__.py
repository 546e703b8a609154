"""Attack algorithms: what an attacker does with a :class:`~snnrobust.evaluation.Victim`.

FGSM/R-FGSM, PGD, MI-FGSM, SA-PGD, random noise, transfer from source models, and AutoAttack's
APGD-CE/-DLR/-T, FAB-T and Square through the official code; their losses; the registry
(``get_attack``) and one attack over several eps (``sweep``). Every attack perturbs ``z`` (pixels
[B, C, H, W] in [0, 1], or the encoded spike tensor [T, B, ...]) and takes gradients and
predictions only from the victim, which applies the attacker's gradient estimator
(:mod:`snnrobust.estimators`), EOT and voting. Suites, budgets, the per-sample worst case and
the masking diagnostics live in :mod:`snnrobust.evaluation`.

Typical use::

    from snnrobust.attacks import get_attack
    from snnrobust.evaluation import ThreatModel, Victim
    victim = Victim(model, ThreatModel("linf", "8/255"), estimator="hart:1.0")
    z0 = victim.start(x)
    result = get_attack("pgd", steps=100).run(victim, z0, y)
"""

from .base import Attack, AttackResult
from .losses import LOSSES, ce, cw_margin, dlr, dlr_targeted, get_loss
from .registry import get_attack, list_attacks

__all__ = ["Attack", "AttackResult", "LOSSES", "ce", "cw_margin", "dlr", "dlr_targeted", "get_loss", "get_attack",
           "list_attacks"]
