"""The model as the attacker sees it: threat model, gradient estimator, EOT and voting.

Every attack talks to a :class:`Victim`, never to the raw model, so that the rules that
make a robustness number trustworthy hold for every attack at once:

- the model is in eval mode and its state is reset before **every** forward pass;
- gradients come from the attacker's :mod:`gradient estimator <snnrobust.estimators>`,
  applied for the duration of :meth:`Victim.attack_mode` and removed afterwards (weights,
  surrogates, estimators and training flags come back even when an exception escapes);
- anything random (a Poisson encoder) is attacked with EOT — the gradient of the expected
  loss, estimated as the mean over ``eot`` independent forward passes with fresh draws —
  and scored by majority vote over ``vote`` passes. ``eot``/``vote`` default to 1 for a
  deterministic model and 10 for a stochastic one;
- ``bn_mode="train"`` (seed-000 replication only) puts just the BatchNorm layers in train
  mode while gradients are crafted, with momentum 0 and their running statistics saved and
  restored, so the model is not changed; scoring is always in eval mode;
- ``perturb="spikes"`` (seed-000 replication only) makes the attacked tensor ``z`` the
  encoded input [T, B, C, H, W] = ``model.encode(x)``, drawn once in :meth:`start`, and the
  forward ``model.forward_encoded(z)``. Its bounds are the encoder's code range: unsigned
  Poisson, raw phase bits, direct and latency codes (0, 1); weighted phase bits (0, 0.5)
  (the largest weight 2^-1 — a loose envelope: step t can only reach 2^-(1+mod(t-1,K)));
  signed Poisson (-1, 1).
- with the compiled CPU neuron kernel enabled (:func:`snnrobust.spiking.cpu_kernel.enable`,
  ``attack --neuron-kernel``), gradients through the neurons' own dynamics run through it
  (:class:`~snnrobust.spiking.fused.FusedNeuron`; the same forward values, gradients to float
  rounding); estimators that hook a layer keep their own loop;
- an input gradient that overflows (a very sharp surrogate such as ASSG's on a membrane at
  threshold, multiplied over many timesteps and layers) would make the attack's step NaN and
  the attack silently fail; instead each sample's non-finite gradient is replaced by its limit
  direction (the sign of its infinite entries, NaN entries 0) and counted in
  :attr:`Victim.nonfinite_samples`, which the evaluation reports.

Shapes: pixels ``z`` [B, C, H, W] in [0, 1] (batch dim 0); spikes ``z`` [T, B, C, H, W]
(batch dim 1, see :attr:`Victim.batch_dim`). Logits are [B, K], labels [B].
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from itertools import chain
from typing import Any, Callable, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError
from ..spiking import cpu_kernel
from ..spiking.functional import fused_bptt, keyed_draws, reset_states, use_estimator
from ..estimators import GradientEstimator, get_estimator
from ..attacks.losses import get_loss, is_targeted
from .threat import ThreatModel

LossSpec = Union[str, Callable[..., torch.Tensor]]


class _FiniteGrad(torch.autograd.Function):
    """Identity forward; backward replaces each sample's non-finite gradient by its limit
    direction (sign of the infinite entries, NaN -> 0) and counts such samples on the victim."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, victim: "Victim") -> torch.Tensor:  # type: ignore[override]
        ctx.victim = victim
        return z.view_as(z)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        bd = ctx.victim.batch_dim
        per = g.movedim(bd, 0).reshape(g.shape[bd], -1)
        ok = torch.isfinite(per)
        if bool(ok.all()):
            return g, None
        has_inf = torch.isinf(per).any(1, keepdim=True)
        fixed = torch.where(has_inf, torch.where(torch.isinf(per), per.sign(), torch.zeros_like(per)),
                            torch.where(ok, per, torch.zeros_like(per)))
        ctx.victim.nonfinite_samples += int((~ok.all(1)).sum().item())
        return fixed.reshape(g.movedim(bd, 0).shape).movedim(0, bd), None


def _count(what: str, v: Optional[int], default: int) -> int:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{what} must be a positive integer (number of forward passes), got {v!r}")
    return v


def code_range(encoder: Any) -> tuple[float, float]:
    """The interval an encoder's output lives in (bounds of a spike-tensor perturbation)."""
    if encoder is None:
        raise ConfigError("perturb=spikes needs a model with an encoder; use perturb=pixels")
    own = getattr(encoder, "code_range", None)
    if own is not None:
        lo, hi = own
        return float(lo), float(hi)
    name = getattr(encoder, "name", None)
    if name == "poisson":
        return (-1.0, 1.0) if getattr(encoder, "signed", False) else (0.0, 1.0)
    if name == "phase":
        return (0.0, 0.5) if getattr(encoder, "weighted", False) else (0.0, 1.0)
    if name in ("direct", "latency"):
        lo, hi = getattr(encoder, "input_range", (0.0, 1.0))
        return float(lo), float(hi)
    raise ConfigError(f"perturb=spikes: unknown code range of encoder {name!r}; give it a code_range attribute")


def is_stochastic(model: nn.Module, threat: ThreatModel) -> bool:
    """Whether attacking ``model`` under ``threat`` meets randomness in its forward pass: the
    model's own ``stochastic`` flag when it declares one, else a stochastic encoder (Poisson)
    under a pixel perturbation (with perturb=spikes the encoder runs once, outside the attacked
    function)."""
    declared = getattr(model, "stochastic", None)
    if isinstance(declared, bool):
        return declared
    return bool(threat.perturb == "pixels" and getattr(getattr(model, "encoder", None), "stochastic", False))


class _VictimModule(nn.Module):
    """``forward(z) -> logits`` [B, K] with a graph: reset, estimator applied, mean over
    ``eot`` passes. The victim's model is deliberately not a submodule, so that external
    code calling ``.eval()``/``.train()`` on this wrapper cannot change the attack mode."""

    def __init__(self, victim: "Victim") -> None:
        super().__init__()
        self.victim = victim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = self.victim
        with v.attack_mode():
            z = z.to(v.device)
            out = v._forward(z)
            for _ in range(v.eot - 1):
                out = out + v._forward(z)
            return out / v.eot


class Victim:
    """A model under attack. See the module docstring for the rules it enforces."""

    def __init__(self, model: nn.Module, threat: "ThreatModel | dict | None" = None,
                 estimator: "str | dict | GradientEstimator | None" = None,
                 eot: Optional[int] = None, vote: Optional[int] = None, device: Any = None) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"the victim must be a torch nn.Module, got {type(model).__name__}")
        self.model = model
        self.threat: ThreatModel = ThreatModel() if threat is None else ThreatModel.from_dict(threat)
        self.estimator: GradientEstimator = get_estimator(estimator)
        if self.threat.perturb == "spikes" and not (
            callable(getattr(model, "encode", None)) and callable(getattr(model, "forward_encoded", None))
        ):
            raise ConfigError("perturb=spikes needs a model with encode() and forward_encoded() "
                              "(a snnrobust SpikingClassifier); use perturb=pixels")
        if device is not None:
            self.device = torch.device(device)
            model.to(self.device)
        else:
            first = next(chain(model.parameters(), model.buffers()), None)
            self.device = first.device if first is not None else torch.device("cpu")
        self.encoder = getattr(model, "encoder", None)
        self.stochastic: bool = self._is_stochastic()
        self.eot: int = _count("eot", eot, 10 if self.stochastic else 1)
        self.vote: int = _count("vote", vote, 10 if self.stochastic else 1)
        if self.threat.perturb == "spikes":
            self.bounds: tuple[float, float] = code_range(self.encoder)
        else:
            lo, hi = getattr(self.encoder, "input_range", (0.0, 1.0))
            self.bounds = (float(lo), float(hi))
        self._depth = 0
        self._module: Optional[_VictimModule] = None
        #: sample-gradients whose non-finite entries were replaced (see the module docstring)
        self.nonfinite_samples = 0
        #: compute spent through this victim, in images: forward passes that build a graph for
        #: an input gradient, and forward-only passes (scoring, votes, queries). EOT and vote
        #: passes count once each, so these are the budget's true cost.
        self.gradient_images = 0
        self.forward_images = 0

    def _is_stochastic(self) -> bool:
        return is_stochastic(self.model, self.threat)

    # -- description ---------------------------------------------------------------------
    @property
    def batch_dim(self) -> int:
        """Dimension of ``z`` that indexes samples: 0 for pixels, 1 for spike tensors."""
        return 1 if self.threat.perturb == "spikes" else 0

    def describe(self) -> dict:
        return {
            "threat_model": self.threat.to_dict(),
            "estimator": self.estimator.to_dict(),
            "eot": self.eot,
            "vote": self.vote,
            "stochastic": self.stochastic,
            "bounds": list(self.bounds),
            "replication": self.threat.replication_options,
        }

    # -- geometry ------------------------------------------------------------------------
    def start(self, x: torch.Tensor) -> torch.Tensor:
        """Starting point z0 of an attack on images ``x`` [B, C, H, W] in [0, 1]: ``x``
        itself, or (``perturb="spikes"``) its encoding [T, B, C, H, W], drawn once and fixed.
        Also clears the estimator's state (ASSG) for the new batch."""
        x = x.to(self.device).detach()
        lo, hi = getattr(self.encoder, "input_range", (0.0, 1.0))
        if x.numel() and (x.min().item() < lo - 1e-6 or x.max().item() > hi + 1e-6):
            raise ConfigError(f"inputs must be images with pixels in [{lo:g}, {hi:g}] (normalization lives "
                              f"inside the model), got values in [{x.min().item():.3g}, {x.max().item():.3g}]")
        self.estimator.reset()
        if self.threat.perturb == "spikes":
            with torch.no_grad():
                reset_states(self.model)
                return self.model.encode(x).detach()
        return x.clone()

    def project(self, z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """Into the threat model's eps ball around ``z0``, then into :attr:`bounds`."""
        return self.threat.project(z, z0, self.bounds)

    # -- keyed draws ---------------------------------------------------------------------
    @contextmanager
    def keyed(self, seed: int, keys: Any) -> Iterator[Any]:
        """Per-sample keyed random passes for a ``with`` block (one attack run): the stochastic
        encoder's draws for sample ``k`` on its n-th pass come from (``seed``, k, n), whatever
        its batch-mates (:class:`~snnrobust.keyed_random.PassDraws`). ``keys`` [B]: the global
        sample indices of the batch's rows; narrow them with :meth:`rows` before passing a
        subset. Yields the PassDraws, or None for a model without such draws (a no-op)."""
        with keyed_draws(self.model, seed) as draws:
            if draws is None:
                yield None
                return
            with draws.rows(keys):
                yield draws

    def rows(self, keys: Any):
        """Context: the tensors passed to this victim within it have rows ``keys`` (global
        sample indices). A no-op outside :meth:`keyed`."""
        draws = self._pass_draws()
        return draws.rows(keys) if draws is not None else nullcontext()

    def _pass_draws(self) -> Any:
        draws = getattr(self.encoder, "pass_draws", None)
        if draws is None:  # an encoder elsewhere in the model
            draws = next((m.pass_draws for m in self.model.modules()
                          if getattr(m, "pass_draws", None) is not None), None)
        return draws

    # -- modes ---------------------------------------------------------------------------
    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        reset_states(self.model)  # models reset themselves; foreign modules may not
        n = int(z.shape[self.batch_dim]) if z.dim() > self.batch_dim else 1
        if z.requires_grad and torch.is_grad_enabled():
            self.gradient_images += n
            z = _FiniteGrad.apply(z, self)
        else:
            self.forward_images += n
        if self.threat.perturb == "spikes":
            return self.model.forward_encoded(z)
        return self.model(z)

    @contextmanager
    def attack_mode(self) -> Iterator["Victim"]:
        """Eval mode (BatchNorm in train mode only for ``bn_mode="train"``) with the
        estimator applied. Re-entrant. On exit the model's training flags, BN statistics,
        surrogates and estimators are exactly as before, even after an exception."""
        if self._depth > 0:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        flags = [(m, m.training) for m in self.model.modules()]
        saved_bn: list[tuple] = []
        try:
            with ExitStack() as stack:
                self.model.eval()
                if self.threat.bn_mode == "train":
                    for m in self.model.modules():
                        if isinstance(m, _BatchNorm):
                            saved_bn.append((m, m.momentum, _clone(m.running_mean), _clone(m.running_var),
                                             _clone(m.num_batches_tracked)))
                            m.momentum = 0.0  # batch statistics in forward, running stats untouched
                            m.train()
                stack.enter_context(self.estimator.applied(self.model))
                if cpu_kernel.enabled():  # exact BPTT through the compiled kernel where no hook is set
                    stack.enter_context(fused_bptt(self.model))
                self._depth = 1
                yield self
        finally:
            self._depth = 0
            with torch.no_grad():
                for m, momentum, mean, var, count in saved_bn:
                    m.momentum = momentum
                    for buf, val in ((m.running_mean, mean), (m.running_var, var), (m.num_batches_tracked, count)):
                        if buf is not None and val is not None:
                            buf.copy_(val)
            for m, training in flags:
                m.training = training

    @contextmanager
    def _scoring(self) -> Iterator[None]:
        """Plain eval mode, no estimator (forward values are identical anyway, and stateful
        estimators must not count scoring passes), even inside :meth:`attack_mode`."""
        flags = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            with use_estimator(self.model, None), torch.no_grad():
                yield
        finally:
            for m, training in flags:
                m.training = training

    # -- scoring -------------------------------------------------------------------------
    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """[B, K] without a graph. Deterministic (vote = 1): the logits. Otherwise the log
        of the mean softmax over ``vote`` passes (valid logits of the averaged prediction)."""
        z = z.to(self.device)
        with self._scoring():
            if self.vote == 1:
                return self._forward(z)
            probs = sum(F.softmax(self._forward(z), dim=1) for _ in range(self.vote)) / self.vote
            return probs.clamp_min(1e-30).log()

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Labels [B]: argmax, or the majority vote of ``vote`` passes (ties -> smallest label)."""
        if self.vote == 1:
            z = z.to(self.device)
            with self._scoring():
                return self._forward(z).argmax(1)
        counts, _ = self.votes(z)
        return counts.argmax(1)  # argmax returns the first maximum: the smallest tied label

    def votes(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One vote, in full: (counts [B, K] int64, the number of the ``vote`` passes whose
        argmax is each class; mean softmax [B, K] over the same passes). ``predict`` is
        ``counts.argmax(1)``; attacks use both to rank candidate points by how surely a
        fresh vote would call them misclassified."""
        z = z.to(self.device)
        counts: Optional[torch.Tensor] = None
        probs: Optional[torch.Tensor] = None
        with self._scoring():
            for _ in range(self.vote):
                out = self._forward(z)
                hit = F.one_hot(out.argmax(1), out.shape[1])
                p = F.softmax(out.float(), dim=1)
                counts = hit if counts is None else counts + hit
                probs = p if probs is None else probs + p
        assert counts is not None and probs is not None
        return counts, probs / self.vote

    # -- gradients -----------------------------------------------------------------------
    def _loss_fn(self, loss: LossSpec, targeted: bool) -> Callable[..., torch.Tensor]:
        if callable(loss):
            return loss
        if is_targeted(str(loss)) and not targeted:
            raise ConfigError(f"loss '{loss}' is targeted: pass target labels")
        return get_loss(loss, targeted=targeted)

    def _loss_inputs(self, z: torch.Tensor, y: torch.Tensor, loss: LossSpec, target: Optional[torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Callable[..., torch.Tensor]]:
        """(z detached, y, target, loss function), on the victim's device: what :meth:`grad` and
        :meth:`loss` start from."""
        fn = self._loss_fn(loss, target is not None)
        return (z.to(self.device).detach(), y.to(self.device),
                None if target is None else target.to(self.device), fn)

    def grad(self, z: torch.Tensor, y: torch.Tensor, loss: LossSpec = "ce",
             target: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss [B], dloss/dz shaped like z), both detached, each the mean over ``eot``
        forward passes under the estimator. The attacker maximizes the loss. Only ``z`` is
        differentiated (``torch.autograd.grad``), so no ``.grad`` is left on parameters.
        A loss with no path to ``z`` (a fully masked model) gives an all-zero gradient."""
        z, y, target, fn = self._loss_inputs(z, y, loss, target)
        loss_sum: Optional[torch.Tensor] = None
        grad_sum = torch.zeros_like(z)
        with self.attack_mode(), torch.enable_grad():
            for _ in range(self.eot):
                zz = z.clone().requires_grad_(True)
                out = self._forward(zz)
                loss_b = fn(out, y) if target is None else fn(out, y, target)
                if loss_b.requires_grad:
                    (g,) = torch.autograd.grad(loss_b.sum(), zz, allow_unused=True)
                    if g is not None:
                        grad_sum += g
                loss_b = loss_b.detach()
                loss_sum = loss_b if loss_sum is None else loss_sum + loss_b
        assert loss_sum is not None
        return loss_sum / self.eot, grad_sum / self.eot

    def loss(self, z: torch.Tensor, y: torch.Tensor, loss: LossSpec = "ce",
             target: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss [B] of :meth:`grad` (mean over ``eot`` passes under the estimator, the same
        random draws consumed) without building a graph: an iterative attack's last iterate needs
        its loss for the trace and the best-point choice, not its gradient."""
        z, y, target, fn = self._loss_inputs(z, y, loss, target)
        total: Optional[torch.Tensor] = None
        with self.attack_mode(), torch.no_grad():
            for _ in range(self.eot):
                out = self._forward(z)
                lb = fn(out, y) if target is None else fn(out, y, target)
                total = lb if total is None else total + lb
        assert total is not None
        return total / self.eot

    def module(self) -> nn.Module:
        """An ``nn.Module`` mapping z to logits with a graph (reset, estimator applied, mean
        over ``eot`` passes) for external code such as pyautoattack. Enters
        :meth:`attack_mode` by itself if needed; use it inside ``with victim.attack_mode():``
        to keep the mode for a whole attack."""
        if self._module is None:
            self._module = _VictimModule(self)
        return self._module


def _clone(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().clone()
