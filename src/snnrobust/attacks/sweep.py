"""Epsilon sweeps: one attack at several budgets in one call -> the robustness curve."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import torch

from ..errors import ConfigError
from .base import AttackResult
from .registry import get_attack


def victim_at_eps(victim, eps: float):
    """A Victim identical to ``victim`` except for its threat model's eps."""
    from ..evaluation.victim import Victim

    kwargs: dict[str, Any] = {"estimator": victim.estimator, "eot": victim.eot, "vote": victim.vote}
    device = getattr(victim, "device", None)
    if device is not None:
        kwargs["device"] = device
    return Victim(victim.model, victim.threat.with_eps(eps), **kwargs)


def eps_sweep(attack_name: str, options: Optional[dict], victim, z0: torch.Tensor, y: torch.Tensor,
              eps_list: Iterable[float]) -> list[tuple[float, AttackResult]]:
    """Run ``get_attack(attack_name, **options)`` at every eps of ``eps_list`` (same norm,
    perturbation space, estimator, EOT and vote as ``victim``); returns [(eps, result), ...] in
    the order given. eps = 0 gives the clean predictions (z_adv = z0). A step size left at
    its default scales with each eps; an explicit one stays fixed."""
    attack = get_attack(attack_name, **(options or {}))
    eps_values = list(eps_list)
    if not eps_values:
        raise ConfigError("eps_sweep needs at least one eps value")
    out = []
    for eps in eps_values:
        v = victim_at_eps(victim, eps)
        if float(v.threat.eps) == 0.0:
            z = v.project(z0.detach(), z0.detach())
            success = (v.predict(z) != y).cpu()
            out.append((0.0, AttackResult(z_adv=z, success=success, loss_trace=None,
                                          meta={"attack": attack.name, "eps": 0.0, "norm": v.threat.norm,
                                                "note": "eps = 0: clean predictions, no attack run"})))
            continue
        out.append((float(v.threat.eps), attack.run(v, z0, y)))
    return out
