"""Attack engine: threat models, attacker-chosen gradient estimators, the Victim wrapper
(eval mode, reset, EOT, voting) and the attacks themselves.

Typical use::

    from snnrobust.attacks import ThreatModel, Victim, get_attack
    victim = Victim(model, ThreatModel("linf", "8/255"), estimator="hart:1.0")
    z0 = victim.start(x)
    result = get_attack("pgd", steps=100).run(victim, z0, y)
"""

from .base import Attack, AttackResult
from .estimators import (
    ASSG, BPTR, BPTT, ESTIMATOR_TYPES, ESTIMATORS, HART, PDSG, RGA, STE, GradientEstimator,
    LayerEstimator, get_estimator,
)
from .losses import LOSSES, ce, cw_margin, dlr, dlr_targeted, get_loss
from .registry import get_attack, list_attacks
from .threat import ThreatModel, format_eps, parse_eps
from .victim import Victim, code_range

__all__ = [
    "ASSG", "BPTR", "BPTT", "ESTIMATOR_TYPES", "ESTIMATORS", "HART", "PDSG", "RGA", "STE",
    "GradientEstimator", "LayerEstimator", "get_estimator", "LOSSES", "ce", "cw_margin", "dlr",
    "dlr_targeted", "get_loss", "ThreatModel", "format_eps", "parse_eps", "Victim", "code_range",
    "Attack", "AttackResult", "get_attack", "list_attacks",
]
