"""Transfer (black-box) attacks: craft on one or more source models, score on the target.

For each source model an inner attack (PGD by default) runs through a :class:`Victim` built on
that source with the target's threat model (same norm, eps, perturbation space), the
attacker's ``source_estimator`` and ``source_eot``. Each candidate is scored on the target
victim; per sample the first candidate that fools the target is kept, else the last
candidate (a sample the target already misclassifies keeps z0 unless a candidate also fools
it). Sources are typically the ANN twin or independently trained SNNs (seed 001's black-box
setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from ..errors import ConfigError
from .base import Attack, AttackResult, BestPoints, batch_dim, begin_run, on_device, finish, misclassified


def describe_module(m: nn.Module) -> dict:
    """A JSON-ready description of a source model: its class and, if it has one, its config."""
    d: dict[str, Any] = {"class": type(m).__name__}
    cfg = getattr(m, "config", None)
    to_dict = getattr(cfg, "to_dict", None)
    if callable(to_dict):
        d["config"] = to_dict()
    d["parameters"] = int(sum(p.numel() for p in m.parameters()))
    return d


@dataclass
class TransferConfig:
    sources: list = field(default_factory=list)       # nn.Module source models
    inner: str = "pgd"                                 # attack crafted on each source
    inner_options: dict = field(default_factory=dict)
    source_estimator: Any = None                       # estimator spec for the sources (None = "bptt")
    source_eot: Optional[int] = None                   # EOT samples on the sources (None = Victim default)

    def validate(self, attack: str) -> None:
        if isinstance(self.sources, nn.Module):
            self.sources = [self.sources]
        if not isinstance(self.sources, (list, tuple)) or not self.sources:
            raise ConfigError(f"attack {attack}: give sources=[model, ...], at least one source nn.Module")
        for i, s in enumerate(self.sources):
            if not isinstance(s, nn.Module):
                raise ConfigError(f"attack {attack}: source {i} is a {type(s).__name__}, not an nn.Module")
        self.sources = list(self.sources)
        if self.inner == "transfer":
            raise ConfigError(f"attack {attack}: inner attack cannot itself be 'transfer'")
        if not isinstance(self.inner_options, dict):
            raise ConfigError(f"attack {attack}: inner_options must be a mapping of the inner attack's options")
        eot = self.source_eot
        if eot is not None and (isinstance(eot, bool) or not isinstance(eot, int) or eot < 1):
            raise ConfigError(f"attack {attack}: source_eot must be a positive integer or None, got {eot!r}")


class Transfer(Attack):
    name = "transfer"
    description = "transfer attack: crafted on source models (ANN twin, other SNNs), scored on the target"
    Config = TransferConfig
    kind = "transfer"

    @classmethod
    def budget(cls, settings: dict) -> tuple[Optional[int], Optional[int]]:
        """The budget of the attack crafted on the sources (``settings["inner"]``)."""
        from .registry import attack_budget  # late: the registry imports this module

        inner = settings.get("inner")
        return attack_budget(inner) if isinstance(inner, dict) else (None, None)

    @classmethod
    def with_budget(cls, options: dict, steps: Optional[int], restarts: Optional[int]) -> dict:
        """Steps and restarts set the attack crafted on the sources (``inner``, default pgd),
        where it has such options; the transfer itself has none."""
        from .registry import attack_class

        opts = dict(options)
        inner_cls = attack_class(opts.get("inner", "pgd"))
        inner = dict(opts.get("inner_options") or {})
        for value, key in ((steps, inner_cls.steps_option), (restarts, inner_cls.restarts_option)):
            if value is not None and key is not None:
                inner[key] = value
        opts["inner_options"] = inner
        return opts

    def __init__(self, config=None, **options: Any) -> None:
        super().__init__(config, **options)
        from .registry import get_attack  # late: the registry imports this module

        self.inner = get_attack(self.config.inner, **self.config.inner_options)
        self.estimator_label = self._estimator_label(self.config.source_estimator)

    @staticmethod
    def _estimator_label(spec: Any) -> Any:
        if spec is None or isinstance(spec, (str, dict)):
            return spec
        to_dict = getattr(spec, "to_dict", None)
        return to_dict() if callable(to_dict) else repr(spec)

    def settings(self) -> dict:
        c = self.config
        return {"sources": [describe_module(m) for m in c.sources], "inner": self.inner.to_dict(),
                "source_estimator": self.estimator_label, "source_eot": c.source_eot}

    def source_victim(self, victim, source: nn.Module, device: torch.device):
        from ..evaluation.victim import Victim

        return Victim(source, victim.threat, estimator=self.config.source_estimator,
                      eot=self.config.source_eot, device=device)

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor) -> AttackResult:
        begin_run(victim)
        bdim = batch_dim(victim)
        z0, y = on_device(victim, z0, y)
        best = BestPoints(z0, misclassified(victim, z0, y), bdim, None)
        idx = torch.arange(y.shape[0], device=best.success.device)
        per_source = []
        for i, source in enumerate(self.config.sources):
            sv = self.source_victim(victim, source, z0.device)
            res = self.inner.run(sv, z0, y)
            fooled = misclassified(victim, res.z_adv, y)
            # "first fooling candidate, else the last": a later candidate only replaces a
            # non-fooling one, by ranking candidates by their order
            order = torch.full((y.shape[0],), float(i), device=best.loss.device)
            best.update(idx, res.z_adv, fooled, order)
            per_source.append({"source": i, **describe_module(source),
                               "estimator": sv.estimator.to_dict(), "eot": sv.eot,
                               "fooled_source": int(res.success.sum().item()),
                               "fooled_target": int(fooled.sum().item()),
                               "inner_meta": {k: v for k, v in res.meta.items() if k != "victim"}})
        meta = self.base_meta(victim)
        meta.update(per_source=per_source, n_sources=len(self.config.sources))
        return finish(victim, best, y, meta)
