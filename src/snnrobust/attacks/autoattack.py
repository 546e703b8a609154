"""AutoAttack's attacks through the official code (PyPI ``pyautoattack``, Croce & Hein 2020):
APGD-CE, APGD-DLR (both in AutoAttack's "rand" version), APGD-T (targeted DLR), FAB-T and
Square (with APGD-CE, the "standard" version).

The victim is handed to pyautoattack as ``victim.module()`` inside ``victim.attack_mode()``:
an ``nn.Module`` that resets the SNN's state before every forward, applies the attacker's
gradient estimator, and (for stochastic victims) averages over EOT samples. For APGD the EOT
averaging is pyautoattack's own ``eot_iter`` (default: ``victim.eot``) over single forward
passes, as in AutoAttack's "rand" version. Notes on the official code that matter here:

- its attack classes never call ``model.eval()`` (``attack_mode`` does) and put tensors on
  ``x.device`` (we pass the device explicitly); ``verbose`` is always off here;
- it reseeds the *global* torch RNG with its ``seed``; we run it inside ``torch.random.fork_rng``
  so the caller's RNG state is unchanged;
- its own warnings (e.g. "points with zero gradient") are captured into ``meta["warnings"]``;
- it perturbs images in [0, 1] only, so these attacks refuse ``perturb="spikes"``;
- it does not expose per-step losses, so ``loss_trace`` is None.

Each sample keeps z0 if the attack fails on it; every returned point is re-projected with
``victim.project`` and scored with ``victim.predict``.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..errors import ConfigError
from .base import (
    Attack, AttackResult, BestPoints, begin_run, check_choice, check_float, check_int, finish,
    misclassified, on_device,
)

_NORMS = {"linf": "Linf", "l2": "L2"}


def _check_eot(attack: str, value: Any) -> None:
    if value is not None:
        check_int(attack, "eot_iter", value, 1)


@dataclass
class APGDCEConfig:
    n_iter: int = 100
    n_restarts: int = 1
    rho: float = 0.75                 # step-size decrease checkpoint threshold
    eot_iter: Optional[int] = None    # None -> victim.eot
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "n_iter", self.n_iter, 1)
        check_int(attack, "n_restarts", self.n_restarts, 1)
        check_float(attack, "rho", self.rho, low=0.0, high=1.0)
        _check_eot(attack, self.eot_iter)
        check_int(attack, "seed", self.seed, 0)


@dataclass
class APGDTConfig(APGDCEConfig):
    n_target_classes: int = 9         # capped at (classes - 1)

    def validate(self, attack: str) -> None:
        super().validate(attack)
        check_int(attack, "n_target_classes", self.n_target_classes, 1)


@dataclass
class FABTConfig:
    n_iter: int = 100
    n_restarts: int = 1
    n_target_classes: int = 9         # capped at (classes - 1)
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "n_iter", self.n_iter, 1)
        check_int(attack, "n_restarts", self.n_restarts, 1)
        check_int(attack, "n_target_classes", self.n_target_classes, 1)
        check_float(attack, "alpha_max", self.alpha_max, low=0.0, high=1.0)
        check_float(attack, "eta", self.eta, low=0.0)
        check_float(attack, "beta", self.beta, low=0.0, high=1.0)
        check_int(attack, "seed", self.seed, 0)


@dataclass
class SquareConfig:
    n_queries: int = 5000
    n_restarts: int = 1
    p_init: float = 0.8
    loss: str = "margin"              # "margin" | "ce"
    resc_schedule: bool = True        # rescale the square-size schedule to n_queries
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "n_queries", self.n_queries, 1)
        check_int(attack, "n_restarts", self.n_restarts, 1)
        check_float(attack, "p_init", self.p_init, low=0.0, high=1.0)
        check_choice(attack, "loss", self.loss, ("margin", "ce"))
        if not isinstance(self.resc_schedule, bool):
            raise ConfigError(f"attack {attack}: option 'resc_schedule' must be true or false")
        check_int(attack, "seed", self.seed, 0)


def victim_module(victim, eot: int):
    """``victim.module()`` averaging ``eot`` forward passes per call.

    The Victim's module averages ``victim.eot`` passes. Where a different count is needed
    (APGD does its own EOT loop over single passes), use ``module(eot=...)`` if the Victim
    offers it, else the module of a twin Victim that differs only in ``eot`` (same model,
    threat model, estimator object, vote and device).

    Returns (module, owner): the module and the Victim whose ``attack_mode`` it runs in."""
    if "eot" in inspect.signature(victim.module).parameters:
        return victim.module(eot=eot), victim
    if eot == victim.eot:
        return victim.module(), victim
    from .victim import Victim

    twin = Victim(victim.model, victim.threat, estimator=victim.estimator, eot=eot, vote=victim.vote,
                  device=getattr(victim, "device", None))
    return twin.module(), twin


class AutoAttackBase(Attack):
    """Shared driver: build the pyautoattack object on the victim's module, run its ``perturb``."""

    def n_classes(self, victim, z0: torch.Tensor) -> int:
        return int(victim.logits(z0[:1]).shape[-1])

    def build(self, module, victim, eps: float, norm: str, device, n_classes: int,
              shape: tuple) -> tuple[Any, dict]:
        """The pyautoattack object and the settings it resolved; ``shape`` = z0.shape[1:]."""
        raise NotImplementedError

    def module_eot(self, victim) -> int:
        """EOT passes averaged inside the module: all of them for attacks without their own
        EOT loop (FAB, Square); APGD averages with its eot_iter over single passes."""
        return int(getattr(victim, "eot", 1) or 1)

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor) -> AttackResult:
        begin_run(victim)
        threat = victim.threat
        if threat.perturb == "spikes":
            raise ConfigError(f"attack {self.name}: AutoAttack attacks perturb pixels only; "
                              "use pgd, sapgd or mifgsm for perturb=spikes")
        if threat.norm not in _NORMS:
            raise ConfigError(f"attack {self.name}: norm {threat.norm!r} is not supported; use linf or l2")
        z0, y = on_device(victim, z0, y)
        best = BestPoints(z0, misclassified(victim, z0, y), 0, None)
        k = self.n_classes(victim, z0)
        devices = [z0.device] if z0.device.type == "cuda" else []
        module, owner = victim_module(victim, self.module_eot(victim))
        with victim.attack_mode(), owner.attack_mode(), warnings.catch_warnings(record=True) as caught, \
                torch.random.fork_rng(devices=devices):
            warnings.simplefilter("always")
            atk, used = self.build(module, victim, float(threat.eps), _NORMS[threat.norm], z0.device, k,
                                   tuple(z0.shape[1:]))
            try:
                adv = atk.perturb(z0.clone(), y.clone().long())
            except RuntimeError as e:
                # pyautoattack's L2 Square mis-shapes its windows at some image sizes (seen at 12x12)
                if self.name == "square" and threat.norm == "l2" and "shape" in str(e):
                    raise ConfigError(f"attack square under L2 fails on {tuple(z0.shape[-2:])} images in the "
                                      f"official code ({str(e).splitlines()[0][:80]}); use linf or another attack") from None
                raise
        adv = adv.detach().to(z0.dtype)
        z = victim.project(adv, z0)
        idx = torch.arange(y.shape[0], device=best.success.device)
        best.update(idx, z, misclassified(victim, z, y), torch.zeros(y.shape[0], device=best.loss.device))
        meta = self.base_meta(victim)
        meta.update(used)
        meta.update(implementation="pyautoattack " + _version(), n_classes=k,
                    loss_trace_note="not exposed by pyautoattack",
                    warnings=sorted({str(w.message) for w in caught}))
        return finish(victim, best, y, meta)


def _version() -> str:
    import pyautoattack

    return getattr(pyautoattack, "__version__", "?")


class APGDCE(AutoAttackBase):
    name = "apgd-ce"
    description = "APGD-CE (AutoAttack, official pyautoattack code): step-size-free PGD on cross-entropy"
    Config = APGDCEConfig
    iterative = True

    def module_eot(self, victim) -> int:
        return 1

    loss = "ce"

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        from pyautoattack.autopgd_base import APGDAttack

        if self.loss == "dlr" and n_classes < 3:
            raise ConfigError(f"attack {self.name} needs >= 3 classes (DLR loss), the model has {n_classes}; "
                              "use apgd-ce instead")
        c = self.config
        eot = c.eot_iter if c.eot_iter is not None else int(getattr(victim, "eot", 1) or 1)
        atk = APGDAttack(module, n_iter=c.n_iter, norm=norm, n_restarts=c.n_restarts, eps=eps, seed=c.seed,
                         loss=self.loss, eot_iter=eot, rho=c.rho, verbose=False, device=device)
        return atk, {"eot_iter": eot, "loss": self.loss}


class APGDDLR(APGDCE):
    name = "apgd-dlr"
    description = "APGD-DLR (AutoAttack, official code): APGD on the untargeted DLR loss (its rand version)"
    loss = "dlr"


class APGDT(AutoAttackBase):
    name = "apgd-t"
    description = "APGD-T (AutoAttack, official code): targeted DLR loss over the top n_target_classes"
    Config = APGDTConfig
    iterative = True

    def module_eot(self, victim) -> int:
        return 1

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        from pyautoattack.autopgd_base import APGDAttack_targeted

        if n_classes < 4:
            raise ConfigError(f"attack {self.name} needs >= 4 classes (targeted DLR loss), the model has "
                              f"{n_classes}; use apgd-ce instead")
        c = self.config
        eot = c.eot_iter if c.eot_iter is not None else int(getattr(victim, "eot", 1) or 1)
        targets = min(c.n_target_classes, n_classes - 1)
        atk = APGDAttack_targeted(module, n_iter=c.n_iter, norm=norm, n_restarts=c.n_restarts, eps=eps,
                                  seed=c.seed, eot_iter=eot, rho=c.rho, n_target_classes=targets,
                                  verbose=False, device=device)
        return atk, {"eot_iter": eot, "n_target_classes": targets, "loss": "dlr-targeted"}


class FABT(AutoAttackBase):
    name = "fab-t"
    description = "FAB-T (AutoAttack, official code): targeted minimum-norm boundary attack"
    Config = FABTConfig
    iterative = True

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        from pyautoattack.fab_pt import FABAttack_PT

        if n_classes < 2:
            raise ConfigError(f"attack {self.name} needs >= 2 classes")
        c = self.config
        targets = min(c.n_target_classes, n_classes - 1)
        atk = FABAttack_PT(module, norm=norm, n_restarts=c.n_restarts, n_iter=c.n_iter, eps=eps,
                           alpha_max=c.alpha_max, eta=c.eta, beta=c.beta, verbose=False, seed=c.seed,
                           targeted=True, device=device, n_target_classes=targets)
        return atk, {"n_target_classes": targets, "module_eot": self.module_eot(victim)}


class Square(AutoAttackBase):
    name = "square"
    description = "Square attack (AutoAttack, official code): score-based black-box random search"
    Config = SquareConfig

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        from pyautoattack.square import SquareAttack

        c = self.config
        if len(shape) != 3:
            raise ConfigError(f"attack {self.name} needs images [B, C, H, W], got inputs of shape [B, {shape}]")
        if norm == "L2" and min(shape[1:]) < 5:
            raise ConfigError(f"attack {self.name} under L2 needs images of at least 5x5 pixels, "
                              f"got {shape[1]}x{shape[2]}")
        # Square only queries the model: no graph needed
        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x)

        atk = SquareAttack(predict, norm=norm, n_queries=c.n_queries, eps=eps, p_init=c.p_init,
                           n_restarts=c.n_restarts, seed=c.seed, verbose=False, targeted=False,
                           loss=c.loss, resc_schedule=c.resc_schedule, device=device)
        return atk, {"module_eot": self.module_eot(victim)}
