"""Multi-step spiking neurons: input currents [T, B, ...] -> spikes [T, B, ...].

Dynamics at each step t (membrane v, input current x_t, leak factor lam, threshold th):

    charge:  v <- v_rest + lam * (v - v_rest) + x_t        (lam = 1: IF, lam < 1: LIF)
    fire:    s_t = H(v - th)                               (surrogate gradient in backward)
    reset:   hard:  v <- s_t * v_reset + (1 - s_t) * v     (v_rest = v_reset)
             soft:  v <- v - th * s_t                      (v_rest = 0; "reset by subtraction")

With ``detach_reset`` the spike used in the reset carries no gradient (seed 000's code).
The leak form is seed 001's ``U <- lam*U + W*O - th*O``.

State: ``v`` holds the membrane after the last step; :func:`~snnrobust.spiking.functional.reset_states`
clears it and must run before every forward pass (models do it themselves).

The time loop lives in one place, :meth:`SpikingNeuron.run` (with two exact shortcuts: in place
without autograd, and, on request, :class:`~snnrobust.spiking.fused.FusedNeuron` for memory-lean
BPTT through the neuron's own surrogate). Its two hooks are all an
attack-time gradient estimator may change: ``fire`` (the spike function, i.e. which
surrogate backward; it must return the exact step H(u - th) forward) and
``detach_recurrence`` (no gradient from v_{t-1} into u_t). Estimators replace the backward
of a whole layer by setting ``neuron.estimator`` (a callable ``(neuron, x_seq) -> spikes``
that calls ``run``); ``None`` means exact BPTT through the surrogate in
``neuron.surrogate``. Both are swapped by context managers in
:mod:`snnrobust.spiking.functional`, never by editing weights.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError
from .fused import FusedNeuron, run_from_rest, run_in_place
from .surrogates import Surrogate, surrogate_kind

Estimator = Callable[["SpikingNeuron", torch.Tensor], torch.Tensor]
#: A spike function for :meth:`SpikingNeuron.run`: ``(u - threshold [B, ...], step t) -> spikes``,
#: exactly H(u - threshold) forward; only its backward is free.
FireFn = Callable[[torch.Tensor, int], torch.Tensor]


class SpikingNeuron(nn.Module):
    """Base multi-step neuron. Subclasses only fix the leak."""

    #: True: exact BPTT through :class:`~snnrobust.spiking.fused.FusedNeuron` (one autograd node
    #: for all T steps, only the membrane kept: 12-16 % less training memory, 12-14 % slower on
    #: CPU, BENCHMARKS.md) when no estimator hook is active; False (default): the reference loop,
    #: node by node. Set per model by :func:`~snnrobust.spiking.functional.fused_bptt`.
    fused: bool = False

    def __init__(
        self,
        threshold: float = 1.0,
        leak: float = 1.0,
        reset: str = "hard",
        v_reset: float = 0.0,
        detach_reset: bool = False,
        surrogate: "Surrogate | str | dict" = "atan:2",
    ) -> None:
        super().__init__()
        if not threshold > 0:
            raise ConfigError(f"neuron threshold must be > 0, got {threshold}")
        if not 0 < leak <= 1:
            raise ConfigError(f"neuron leak factor must be in (0, 1] (1 = IF), got {leak}")
        if reset not in ("hard", "soft"):
            raise ConfigError(f"neuron reset must be 'hard' or 'soft', got {reset!r}")
        self.threshold = float(threshold)
        self.leak = float(leak)
        self.reset_mode = reset
        self.v_reset = float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.surrogate: Surrogate = Surrogate.parse(surrogate)
        self.estimator: Optional[Estimator] = None
        # When True, the membrane before firing is kept in ``self.membrane`` [T, B, ...]
        # (analysis and adaptive estimators read it); off by default to save memory.
        self.record_membrane = False
        self.membrane: Optional[torch.Tensor] = None
        self.v: Optional[torch.Tensor] = None

    # -- state -------------------------------------------------------------------------
    def reset_state(self) -> None:
        self.v = None
        self.membrane = None

    @property
    def v_rest(self) -> float:
        return self.v_reset if self.reset_mode == "hard" else 0.0

    def initial_membrane(self, like: torch.Tensor) -> torch.Tensor:
        return torch.full_like(like, self.v_rest)

    # -- one step, split so estimators can reuse the pieces ------------------------------
    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.leak == 1.0:
            return v + x
        rest = self.v_rest
        return rest + self.leak * (v - rest) + x if rest else self.leak * v + x

    def fire(self, v: torch.Tensor) -> torch.Tensor:
        return self.surrogate.spike(v - self.threshold)

    def reset_membrane(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.detach_reset:
            s = s.detach()
        if self.reset_mode == "hard":
            return v * (1 - s) + self.v_reset * s
        return v - self.threshold * s

    # -- the one time loop ----------------------------------------------------------------
    def run(self, x_seq: torch.Tensor, fire: Optional[FireFn] = None, detach_recurrence: bool = False,
            keep_state: bool = True, record: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The neuron's dynamics over x_seq [T, B, ...] (input current per step), starting from
        the stored ``v`` (or rest). Returns (spikes [T, B, ...], pre-spike membrane [T, B, ...]
        or None): the membrane is returned when ``record`` or ``record_membrane`` is set.

        Hooks for gradient estimators (the forward values never change):

        - ``fire(u - threshold, t)`` replaces the neuron's own surrogate spike ``self.fire``;
        - ``detach_recurrence``: u_t = charge(v_{t-1}.detach(), x_t), so du_t/dx_t = 1 and no
          gradient crosses steps (HART).

        ``keep_state``: store the final membrane in ``v`` (and the pre-spike trace in
        ``membrane`` when ``record_membrane``) as the forward does; False leaves the state
        untouched (a look-ahead pass)."""
        keep_trace = record or self.record_membrane
        if fire is None and not torch.is_grad_enabled() and self._own_dynamics():
            spikes, membrane, v = self._run_no_grad(x_seq, keep_trace)
            if keep_state:
                self.v = v
                if self.record_membrane:
                    self.membrane = membrane
            return spikes, membrane
        if (self.fused and fire is None and not detach_recurrence and not keep_trace and self.v is None
                and self._own_dynamics()):
            # exact BPTT through the surrogate as one autograd function over all T steps
            sg = self.surrogate
            spikes, v = FusedNeuron.apply(x_seq, self.threshold, self.leak, self.v_rest, self.v_reset,
                                          self.reset_mode == "soft", self.detach_reset,
                                          surrogate_kind(sg.kind).grad, sg.param, sg.scale)
            if keep_state:
                self.v = v
            return spikes, None
        v = self.v if self.v is not None else self.initial_membrane(x_seq[0])
        spikes, mems = [], []
        for t, x in enumerate(x_seq):
            v = self.charge(v.detach() if detach_recurrence else v, x)
            if keep_trace:
                mems.append(v)
            s = self.fire(v) if fire is None else fire(v - self.threshold, t)
            v = self.reset_membrane(v, s)
            spikes.append(s)
        membrane = torch.stack(mems) if keep_trace else None
        if keep_state:
            self.v = v
            if self.record_membrane:
                self.membrane = membrane
        return torch.stack(spikes), membrane

    def _own_dynamics(self) -> bool:
        """True when charge, fire and reset are this module's (a foreign neuron overrides them,
        and then only the generic loop is right)."""
        cls = type(self)
        return (cls.charge is SpikingNeuron.charge and cls.fire is SpikingNeuron.fire
                and cls.reset_membrane is SpikingNeuron.reset_membrane)

    def _run_no_grad(self, x_seq: torch.Tensor, keep_trace: bool
                     ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """The loop of :meth:`run` without autograd (scoring passes, query attacks), from the
        stored membrane: :func:`~snnrobust.spiking.fused.run_in_place`, the same values bit for
        bit with about half the operations per step; from rest,
        :func:`~snnrobust.spiking.fused.run_from_rest` (the compiled CPU kernel's loop when enabled).
        Returns (spikes, membrane or None, final v)."""
        if self.v is None:
            return run_from_rest(x_seq, self.threshold, self.leak, self.v_rest, self.v_reset,
                                 self.reset_mode == "soft", keep_trace)
        return run_in_place(x_seq, self.v.clone(), self.threshold, self.leak, self.v_rest, self.v_reset,
                            self.reset_mode == "soft", keep_trace)

    # -- multi-step forward --------------------------------------------------------------
    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """x_seq: input current [T, B, ...] -> spikes in {0, 1}, same shape."""
        if self.estimator is not None:
            return self.estimator(self, x_seq)
        return self.run(x_seq)[0]

    def extra_repr(self) -> str:
        reset = f"hard(v_reset={self.v_reset})" if self.reset_mode == "hard" else "soft"
        return (
            f"threshold={self.threshold}, leak={self.leak}, reset={reset}, "
            f"detach_reset={self.detach_reset}, surrogate={self.surrogate.spec()}"
        )


class IFNode(SpikingNeuron):
    """Integrate-and-fire: no leak (leak factor 1)."""

    def __init__(self, threshold: float = 1.0, reset: str = "hard", v_reset: float = 0.0,
                 detach_reset: bool = False, surrogate: "Surrogate | str | dict" = "atan:2") -> None:
        super().__init__(threshold, 1.0, reset, v_reset, detach_reset, surrogate)


class LIFNode(SpikingNeuron):
    """Leaky integrate-and-fire with multiplicative leak factor ``leak`` in (0, 1]."""

    def __init__(self, threshold: float = 1.0, leak: float = 0.99, reset: str = "soft",
                 v_reset: float = 0.0, detach_reset: bool = False,
                 surrogate: "Surrogate | str | dict" = "atan:2") -> None:
        super().__init__(threshold, leak, reset, v_reset, detach_reset, surrogate)


NEURONS = {"if": IFNode, "lif": LIFNode}
