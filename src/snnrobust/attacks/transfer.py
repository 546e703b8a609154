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

import hashlib
import json
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from ..errors import ConfigError
from .base import (Attack, AttackResult, BestPoints, batch_dim, begin_run, finish, index_batch, keyed_passes,
                   misclassified, note_unkeyed, on_device, sample_keys)


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
    source_eot: Optional[int] = None                   # EOT on stochastic sources (None = Victim default)
    source_vote: Optional[int] = None                  # votes on stochastic sources (None = the target's)
    reuse: bool = True                                 # reuse points crafted earlier (same source, settings, images)

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
        for name in ("source_eot", "source_vote"):
            n = getattr(self, name)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ConfigError(f"attack {attack}: {name} must be a positive integer or None, got {n!r}")
        if not isinstance(self.reuse, bool):
            raise ConfigError(f"attack {attack}: reuse must be true or false, got {self.reuse!r}")


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
                "source_estimator": self.estimator_label, "source_eot": c.source_eot,
                "source_vote": c.source_vote, "reuse": c.reuse}

    def source_victim(self, victim, source: nn.Module, device: torch.device):
        """The source as the crafting attacker sees it. ``source_eot`` and ``source_vote`` apply
        to a stochastic source; a deterministic one takes one pass for each (repeating an
        identical pass adds nothing)."""
        from ..evaluation.victim import Victim, is_stochastic

        c = self.config
        if is_stochastic(source, victim.threat):
            eot, vote = c.source_eot, c.source_vote if c.source_vote is not None else getattr(victim, "vote", None)
        else:
            eot, vote = 1, 1
        return Victim(source, victim.threat, estimator=c.source_estimator, eot=eot, vote=vote, device=device)

    def craft(self, sv, z0: torch.Tensor, y: torch.Tensor, bdim: int,
              keys: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(points [like z0], fooled the source bool [B], samples reused): the inner attack on
        source victim ``sv`` (its draws keyed by ``keys``, see :meth:`Attack.run`), run only on
        the samples :class:`CraftedPoints` has no point for."""
        keys = sample_keys(keys, y.shape[0])
        if not self.config.reuse:
            res = self.inner.run(sv, z0, y, keys=keys)
            return res.z_adv, res.success.cpu(), 0
        store = CraftedPoints.of(sv.model)
        setting = store.setting_key(self.inner.to_dict(), sv)
        stored = [store.sample_key(z0.select(bdim, i), int(y[i])) for i in range(y.shape[0])]
        z = z0.clone()
        fooled = torch.zeros(y.shape[0], dtype=torch.bool)
        missing = []
        for i, k in enumerate(stored):
            hit = store.get(setting, k)
            if hit is None:
                missing.append(i)
            else:
                z.select(bdim, i).copy_(hit[0].to(z.device, z.dtype))
                fooled[i] = hit[1]
        if missing:
            idx = torch.tensor(missing, device=z0.device)
            res = self.inner.run(sv, index_batch(z0, idx, bdim), y[idx], keys=keys[idx.cpu()])
            z.index_copy_(bdim, idx, res.z_adv.to(z.dtype))
            fooled[idx.cpu()] = res.success.cpu()
            for j, i in enumerate(missing):
                store.put(setting, stored[i], res.z_adv.select(bdim, j), bool(res.success[j]))
        return z, fooled, y.shape[0] - len(missing)

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor, keys: Optional[torch.Tensor] = None) -> AttackResult:
        begin_run(victim)
        bdim = batch_dim(victim)
        z0, y = on_device(victim, z0, y)
        keys = sample_keys(keys, y.shape[0])
        with keyed_passes(victim, self.name, getattr(self.config, "seed", None), keys) as draws:
            best = BestPoints(z0, misclassified(victim, z0, y), bdim, None)
            idx = torch.arange(y.shape[0], device=best.success.device)
            per_source = []
            for i, source in enumerate(self.config.sources):
                sv = self.source_victim(victim, source, z0.device)
                z_adv, fooled_source, reused = self.craft(sv, z0, y, bdim, keys)
                fooled = misclassified(victim, z_adv, y)
                # "first fooling candidate, else the last": a later candidate only replaces a
                # non-fooling one, by ranking candidates by their order
                order = torch.full((y.shape[0],), float(i), device=best.loss.device)
                best.update(idx, z_adv, fooled, order)
                per_source.append({"source": i, **describe_module(source),
                                   "estimator": sv.estimator.to_dict(), "eot": sv.eot, "vote": sv.vote,
                                   "fooled_source": int(fooled_source.sum().item()),
                                   "fooled_target": int(fooled.sum().item()),
                                   "reused_samples": reused, "inner": self.inner.to_dict()})
            meta = self.base_meta(victim)
            meta.update(per_source=per_source, n_sources=len(self.config.sources))
            result = finish(victim, best, y, meta)
            note_unkeyed(meta, draws)
            return result


class CraftedPoints:
    """Points crafted on one source module, per (inner attack and source settings, sample).

    Held in a weak map keyed by the source module, so the points live exactly as long as the
    module. A key includes each parameter's and buffer's version counter and sum, so a change
    of the weights (training the source further, a write through ``.data``) makes every earlier
    point stale. At
    most ``max_bytes`` of points are kept; the oldest go first."""

    _stores: "weakref.WeakKeyDictionary[nn.Module, CraftedPoints]" = weakref.WeakKeyDictionary()
    max_bytes = 512 * 2 ** 20

    def __init__(self, source: nn.Module) -> None:
        self.source = weakref.ref(source)
        self.points: "OrderedDict[tuple, tuple[torch.Tensor, bool]]" = OrderedDict()
        self.nbytes = 0

    @classmethod
    def of(cls, source: nn.Module) -> "CraftedPoints":
        store = cls._stores.get(source)
        if store is None:
            store = cls._stores[source] = cls(source)
        return store

    def setting_key(self, inner: dict, sv) -> str:
        source = self.source()
        tensors = [] if source is None else [t.detach() for t in (*source.parameters(), *source.buffers())]
        # version counters catch in-place updates (optimizer steps, load_state_dict); the sums
        # also catch writes through ``.data``, which bypass the counters
        versions = [(t.data_ptr(), t._version, float(t.double().sum())) for t in tensors]
        return json.dumps({"inner": inner, "estimator": sv.estimator.to_dict(), "eot": sv.eot, "vote": sv.vote,
                           "threat": sv.threat.to_dict(), "bounds": list(sv.bounds), "weights": versions,
                           "device": str(sv.device)}, sort_keys=True, default=str)

    @staticmethod
    def sample_key(z: torch.Tensor, label: int) -> str:
        t = z.detach().contiguous().cpu()
        h = hashlib.sha1(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        h.update(f"{tuple(t.shape)}|{t.dtype}|{label}".encode())
        return h.hexdigest()

    def get(self, setting: str, sample: str) -> Optional[tuple[torch.Tensor, bool]]:
        return self.points.get((setting, sample))

    def put(self, setting: str, sample: str, z: torch.Tensor, fooled: bool) -> None:
        key = (setting, sample)
        if key in self.points:
            return
        z = z.detach().clone()
        self.points[key] = (z, fooled)
        self.nbytes += z.numel() * z.element_size()
        while self.nbytes > self.max_bytes and self.points:
            _, (old, _) = self.points.popitem(last=False)
            self.nbytes -= old.numel() * old.element_size()
