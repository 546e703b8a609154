"""Gradient estimators: the attacker's choice of how to differentiate a trained SNN.

A spike is a step function, so an input gradient of an SNN only exists through some
estimator, and which one the defender happened to train with says nothing about which one
breaks the model. Every estimator here is applied at attack time to any trained model by
:meth:`GradientEstimator.applied` (a context manager that swaps surrogates or sets
``neuron.estimator`` on every spiking neuron and restores them afterwards; weights are
never touched). Each one keeps the neuron's forward *exactly* (identical spikes); only the
backward changes.

Notation for one spiking layer: input currents x_t [T, B, ...], pre-spike membrane u_t,
spikes s_t = H(u_t - theta), incoming gradient g_t = dL/ds_t, leak factor lam (1 for IF).

==========  ==================================================================================
spec        backward
==========  ==================================================================================
bptt        exact BPTT through the model's own surrogate
bptt:K:P[:S]  BPTT with surrogate kind K, width/sharpness P, scale S from the registry
ste         BPTT with the straight-through surrogate (dH/du := 1)
bptr        Ding et al. 2022: dL/dx_t = g_t * [mean_t s_t > 0] (mask per neuron, same for all t)
rga[:g[:b[:tau]]]  Bu et al. 2023: rate function of xbar = mean_t x_t;
            dL/dx_t = f'(xbar) * mean_t g_t with f' = k/D on ((1-tau)D, b*D],
            g/D on [0, (1-tau)D], 0 elsewhere; k = (1 - g(1-tau)) / (b-1+tau), where
            D = theta - v_rest is the distance from rest to threshold (theta for soft
            reset or v_reset = 0). The rate function f(xbar) = integral_0^xbar f' rises to
            g(1-tau) at (1-tau)D and to exactly 1 spike/step at b*D, for every theta.
            Defaults g=0.2, b=2 (the authors' released code), tau = the neuron's leak factor
            (for constant input a neuron with decay tau fires iff xbar > (1-tau) D, so IF
            (tau=1) has no sub-threshold band and slope 1/(b D)).
            Why 1/D: with w = (v - v_rest)/D the dynamics become w <- tau w + x/D, fire at
            w >= 1, reset to 0 (hard) or by 1 (soft): the neuron with threshold theta and
            input x spikes exactly like one with threshold 1 and input x/D, so its rate is
            r_D(xbar) = r_1(xbar/D) and r_D' = r_1'(xbar/D)/D. The released code is written
            for D = 1 (g on [0, 1-tau], k on (1-tau, b]); both pieces scale by 1/D. Scaling
            only the slope (k/D next to an unscaled g) puts the integral at b*D at
            1 + g(1-tau)(D-1) (1.02 for D=2, tau=0.9; 0.95 for D=0.5, tau=0.5), and once
            g(1-tau)D > 1 (converted models, thresholds of 5-10) the band where the neuron
            is silent alone would integrate to more than 1 spike/step.
hart[:gamma]  Hao et al. 2024: dL/dx_t = (mean_t' g_t') * tri_gamma(u_t - theta) — the time-
            averaged incoming gradient, membrane recurrence detached
            (u_t = lam * v_{t-1}.detach() + x_t, so du_t/dx_t = 1), triangle surrogate
            tri_gamma(x) = max(0, 1 - |x|/gamma)/gamma; gamma default 1.0.
pdsg        Lun et al. 2025: BPTT with a Gaussian surrogate whose sigma = std of the layer's
            membrane potential u, computed in the forward per sample (over all steps and
            neurons of the layer, population std) so that a sample's gradient does not depend
            on which other samples share its batch.
assg[:A[:r[:b]]]  Wang et al. 2025: BPTT with the ATan surrogate and per-neuron, per-step sharpness
            alpha = a / (M + r D + 1e-4), a = 2 tan(pi A / 2) / pi, where over successive
            forward passes (attack iterations) M <- b M + (1-b) |u - theta| and
            D <- b D + (1-b) ||u - theta| - M| (M already updated); first pass M = |u - theta|,
            D = 0. Defaults A = 0.4, r = 1, b = 0.9. State lives on the estimator object per neuron and
            is cleared by :meth:`GradientEstimator.reset` (call it at the start of each attack
            run; it is also re-initialized when the batch shape changes).
==========  ==================================================================================

With alpha = a / M the ATan surrogate puts mass A of its integral inside |u - theta| < M, so
ASSG's A is the fraction of the typical membrane spread that passes gradient.
"""

from __future__ import annotations

import math
import weakref
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.functional import use_estimator, use_surrogate
from ..spiking.neurons import SpikingNeuron
from ..spiking.surrogates import Surrogate


# ---------------------------------------------------------------------------------------
# building blocks. The dynamics (charge, fire, reset) live only in the neuron's own loop,
# SpikingNeuron.run; an estimator states what differs: the spike function's backward, a
# detached recurrence, or a whole replaced backward around the exact (graph-free) forward.
# ---------------------------------------------------------------------------------------
def exact_forward(neuron: SpikingNeuron, x_seq: torch.Tensor,
                  keep_state: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The neuron's own loop without a graph: (spikes, pre-spike membrane), both [T, B, ...].
    With ``keep_state`` the neuron's ``v`` (and ``membrane`` when recording) are updated as by
    its forward."""
    with torch.no_grad():
        spikes, membrane = neuron.run(x_seq, keep_state=keep_state, record=True)
    assert membrane is not None
    return spikes, membrane


class _TimeAveragedGrad(torch.autograd.Function):
    """Identity forward on spikes [T, B, ...]; backward replaces each step's incoming gradient
    by its mean over the T steps (HART's time-averaged gradient)."""

    @staticmethod
    def forward(ctx, spikes):  # type: ignore[override]
        return spikes.view_as(spikes)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g.mean(0, keepdim=True).expand_as(g)


class _ReplacedBackward(torch.autograd.Function):
    """Forward: ``run(x_seq) -> (spikes, vjp)`` computed without a graph; backward:
    ``vjp(grad_spikes) -> grad_x_seq``. Used by the layer-level estimators."""

    @staticmethod
    def forward(ctx, x_seq, run):  # type: ignore[override]
        spikes, vjp = run(x_seq)
        ctx.vjp = vjp
        return spikes

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        vjp = ctx.vjp
        ctx.vjp = None  # free what the closure holds
        return vjp(g), None


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample [B] tensor as [B, 1, ...] broadcastable to one step [B, ...]."""
    return v.view(-1, *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------------------------
# the estimator objects
# ---------------------------------------------------------------------------------------
class GradientEstimator:
    """Base class. Subclasses set ``name``, ``description``, ``positional`` (the order of
    parameters in a spec string) and implement :meth:`applied`."""

    name: str = ""
    description: str = ""
    positional: tuple[str, ...] = ()

    def __init__(self, **params: Any) -> None:
        self.params: dict = params

    # -- description ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "params": dict(self.params), "label": self.label()}

    def label(self) -> str:
        shown = {k: v for k, v in self.params.items() if v is not None}
        if not shown:
            return self.name.upper()
        inner = ",".join(f"{_GREEK.get(k, k)}={_fmt_label(v)}" for k, v in shown.items())
        return f"{self.name.upper()}[{inner}]"

    def spec(self) -> str:
        """A string that :func:`get_estimator` parses back to an equal estimator."""
        import inspect

        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        vals = [self.params[k] for k in self.positional]
        # drop trailing fields left at their defaults ("assg:0.4:1" -> "assg")
        while vals and (vals[-1] is None or vals[-1] == defaults.get(self.positional[len(vals) - 1])):
            vals.pop()
        if any(v is None for v in vals):  # a gap: no positional form
            return self.name
        return ":".join([self.name] + [_fmt(v) for v in vals])

    def __repr__(self) -> str:
        return f"<GradientEstimator {self.label()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GradientEstimator) and self.to_dict() == other.to_dict()

    __hash__ = object.__hash__

    # -- use -----------------------------------------------------------------------------
    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Apply this estimator to every spiking neuron of ``model``; restore on exit."""
        raise NotImplementedError

    def reset(self) -> None:
        """Clear any state kept across forward passes (start of an attack run)."""


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _fmt_label(v: Any) -> str:
    """Floats keep a decimal point in labels (``γ=1.0``)."""
    text = _fmt(v)
    return text + ".0" if isinstance(v, float) and text.lstrip("-").isdigit() else text


_GREEK = {"gamma": "γ", "beta": "β", "tau": "τ"}


class BPTT(GradientEstimator):
    """Exact BPTT with a surrogate: the model's own (``surrogate=None``) or any from the registry."""

    name = "bptt"
    description = "BPTT through the model's own surrogate, or bptt:KIND:PARAM[:SCALE] for any registered one"

    def __init__(self, surrogate: "Surrogate | str | dict | None" = None) -> None:
        self.surrogate: Optional[Surrogate] = None if surrogate is None else Surrogate.parse(surrogate)
        super().__init__(surrogate=None if self.surrogate is None else self.surrogate.to_dict())

    def label(self) -> str:
        return "BPTT[model surrogate]" if self.surrogate is None else f"BPTT[{self.surrogate.spec()}]"

    def spec(self) -> str:
        return "bptt" if self.surrogate is None else f"bptt:{self.surrogate.spec()}"

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        with ExitStack() as stack:
            # exact BPTT: no layer-level estimator may stay in place
            stack.enter_context(use_estimator(model, None))
            if self.surrogate is not None:
                stack.enter_context(use_surrogate(model, self.surrogate))
            yield model


class STE(BPTT):
    name = "ste"
    description = "BPTT with the straight-through surrogate (dH/du := 1)"

    def __init__(self) -> None:
        super().__init__("straight-through")
        self.params = {}

    def label(self) -> str:
        return "STE"

    def spec(self) -> str:
        return "ste"


class LayerEstimator(GradientEstimator):
    """An estimator that replaces each spiking layer's forward (``neuron.estimator``) by a
    call of this object: ``(neuron, x_seq [T, B, ...]) -> spikes`` with exact values."""

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        with use_estimator(model, self):
            yield model

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BPTR(LayerEstimator):
    name = "bptr"
    description = "Ding et al. 2022: dL/dx_t = dL/ds_t * [mean_t s_t > 0] per neuron"

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        def run(x: torch.Tensor):
            spikes, _ = exact_forward(neuron, x)
            mask = (spikes.mean(0) > 0).to(x.dtype)
            return spikes, lambda g: g * mask

        return _ReplacedBackward.apply(x_seq, run)


class RGA(LayerEstimator):
    name = "rga"
    description = "Bu et al. 2023: rate-function gradient of the time-averaged input (rga[:gamma[:beta[:tau]]])"
    positional = ("gamma", "beta", "tau")

    def __init__(self, gamma: float = 0.2, beta: float = 2.0, tau: Optional[float] = None) -> None:
        gamma, beta = _num("rga gamma", gamma, min_=0.0), _num("rga beta", beta, positive=True)
        if tau is not None:
            tau = _num("rga tau", tau, positive=True)
            if tau > 1:
                raise ConfigError(f"rga tau (leak factor) must be in (0, 1], got {tau}")
        super().__init__(gamma=gamma, beta=beta, tau=tau)

    def rate_derivative(self, xbar: torch.Tensor, threshold: float, leak: float,
                        v_rest: float = 0.0) -> torch.Tensor:
        """f'(xbar) [same shape as xbar, units 1/input] for a neuron with this threshold,
        leak factor (tau overrides it) and resting/reset potential; integrates to 1 spike per
        step over [0, beta * (threshold - v_rest)]."""
        gamma, beta = self.params["gamma"], self.params["beta"]
        tau = self.params["tau"] if self.params["tau"] is not None else leak
        scale = threshold - v_rest  # D: input (per step, summed) that carries rest to threshold
        if not scale > 0:
            raise ConfigError(f"rga: threshold {threshold:g} must exceed the reset potential {v_rest:g}")
        lo, hi = (1 - tau) * scale, beta * scale
        if not hi > lo:
            raise ConfigError(f"rga: beta={beta} must exceed 1 - tau = {1 - tau:g}")
        if not gamma * (1 - tau) < 1:
            # the sub-threshold band alone would already reach 1 spike/step: no room for the slope
            raise ConfigError(f"rga: gamma * (1 - tau) = {gamma * (1 - tau):g} must be < 1")
        # both pieces in units of the normalized input xbar / D (see the module docstring)
        slope = (1 - gamma * (1 - tau)) / ((beta - 1 + tau) * scale)
        zero = torch.zeros_like(xbar)
        sub = torch.where((xbar >= 0) & (xbar <= lo), torch.full_like(xbar, gamma / scale), zero)
        return torch.where((xbar > lo) & (xbar <= hi), torch.full_like(xbar, slope), sub)

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        def run(x: torch.Tensor):
            spikes, _ = exact_forward(neuron, x)
            fprime = self.rate_derivative(x.mean(0), neuron.threshold, neuron.leak, neuron.v_rest)
            # dL/dxbar = f'(xbar) * sum_t g_t ; dxbar/dx_t = 1/T
            return spikes, lambda g: (fprime * g.mean(0)).unsqueeze(0).expand_as(g)

        return _ReplacedBackward.apply(x_seq, run)


class HART(LayerEstimator):
    name = "hart"
    description = "Hao et al. 2024: time-averaged gradient, detached membrane, triangle surrogate (hart[:gamma])"
    positional = ("gamma",)

    def __init__(self, gamma: float = 1.0) -> None:
        super().__init__(gamma=_num("hart gamma", gamma, positive=True))
        self._tri = Surrogate("triangle", self.params["gamma"])

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        # with v_{t-1} detached, ds_t/dx_t = tri(u_t - theta) and nothing crosses steps; the
        # time average of the incoming gradient is applied to the layer's output
        spikes, _ = neuron.run(x_seq, fire=lambda xm, t: self._tri.spike(xm), detach_recurrence=True)
        return _TimeAveragedGrad.apply(spikes)


class PDSG(LayerEstimator):
    name = "pdsg"
    description = "Lun et al. 2025: Gaussian surrogate, sigma = std of the layer's membrane potential"
    positional = ("min_sigma",)

    def __init__(self, min_sigma: float = 1e-6) -> None:
        super().__init__(min_sigma=_num("pdsg min_sigma", min_sigma, positive=True))
        self._gauss = Surrogate("gaussian")

    def label(self) -> str:
        return "PDSG"

    def sigma(self, u: torch.Tensor) -> torch.Tensor:
        """Per-sample std of the membrane [T, B, ...] over steps and neurons -> [B]."""
        flat = u.transpose(0, 1).reshape(u.shape[1], -1)
        return flat.std(dim=1, unbiased=False).clamp_min(self.params["min_sigma"])

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        _, u = exact_forward(neuron, x_seq, keep_state=False)  # look ahead for sigma only
        sigma = _bcast(self.sigma(u), x_seq[0])
        return neuron.run(x_seq, fire=lambda xm, t: self._gauss.spike(xm, param=sigma))[0]


class ASSG(LayerEstimator):
    name = "assg"
    description = "Wang et al. 2025: ATan surrogate with adaptive per-neuron, per-step sharpness (assg[:A[:r[:beta]]])"
    positional = ("A", "r", "beta")

    def __init__(self, A: float = 0.4, r: float = 1.0, beta: float = 0.9) -> None:
        A = _num("assg A", A, positive=True)
        if not A < 1:
            raise ConfigError(f"assg A (gradient mass fraction) must be in (0, 1), got {A}")
        beta = _num("assg beta", beta, min_=0.0)
        if not beta < 1:
            raise ConfigError(f"assg beta (EMA factor) must be in [0, 1), got {beta}")
        super().__init__(A=A, r=_num("assg r", r, min_=0.0), beta=beta)
        self.a = 2 * math.tan(math.pi * A / 2) / math.pi
        self._atan = Surrogate("atan")
        # per neuron: (M, D), each [T, B, ...], detached
        self._state: "weakref.WeakKeyDictionary[SpikingNeuron, tuple[torch.Tensor, torch.Tensor]]" = (
            weakref.WeakKeyDictionary()
        )

    def label(self) -> str:
        extra = "".join(f",{k}={_fmt_label(self.params[k])}"
                        for k, d in (("r", 1.0), ("beta", 0.9)) if self.params[k] != d)
        return f"ASSG[A={_fmt_label(self.params['A'])}{extra}]"

    def reset(self) -> None:
        self._state.clear()

    def state(self, neuron: SpikingNeuron) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(M, D) kept for ``neuron``, or None."""
        return self._state.get(neuron)

    def __call__(self, neuron: SpikingNeuron, x_seq: torch.Tensor) -> torch.Tensor:
        b, r = self.params["beta"], self.params["r"]
        prev = self._state.get(neuron)
        if prev is not None and (prev[0].shape != x_seq.shape or prev[0].device != x_seq.device):
            prev = None  # another batch: start the averages afresh
        Ms: list[torch.Tensor] = []
        Ds: list[torch.Tensor] = []

        def spike(xm: torch.Tensor, t: int) -> torch.Tensor:
            d = xm.detach().abs()
            if prev is None:
                m, dev = d, torch.zeros_like(d)
            else:
                m = b * prev[0][t] + (1 - b) * d
                dev = b * prev[1][t] + (1 - b) * (d - m).abs()
            Ms.append(m)
            Ds.append(dev)
            alpha = self.a / (m + r * dev + 1e-4)
            return self._atan.spike(xm, param=alpha)

        out, _ = neuron.run(x_seq, fire=spike)
        self._state[neuron] = (torch.stack(Ms), torch.stack(Ds))
        return out


def _num(what: str, v: Any, positive: bool = False, min_: Optional[float] = None) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {v!r}") from None
    if not math.isfinite(f) or (positive and not f > 0) or (min_ is not None and f < min_):
        bound = "> 0" if positive else f">= {min_:g}"
        raise ConfigError(f"{what} must be finite and {bound}, got {v!r}")
    return f


# ---------------------------------------------------------------------------------------
# registry and parsing
# ---------------------------------------------------------------------------------------
ESTIMATOR_TYPES: dict[str, type[GradientEstimator]] = {
    c.name: c for c in (BPTT, STE, BPTR, RGA, HART, PDSG, ASSG)
}

ESTIMATORS: dict[str, str] = {name: cls.description for name, cls in ESTIMATOR_TYPES.items()}


def _unknown(spec: Any) -> ConfigError:
    return ConfigError(
        f"unknown gradient estimator {spec!r}; choose one of: {', '.join(ESTIMATORS)} "
        f"(e.g. bptt:triangle:0.5, hart:1.0, assg:0.4)"
    )


def get_estimator(spec: "str | dict | GradientEstimator | None" = None) -> GradientEstimator:
    """Parse an estimator spec. Strings: ``bptt``, ``bptt:KIND:PARAM[:SCALE]``, ``ste``,
    ``bptr``, ``rga[:gamma[:beta[:tau]]]``, ``hart[:gamma]``, ``pdsg[:min_sigma]``, ``assg[:A[:r[:beta]]]``.
    Dicts: ``{"name": ..., "params": {...}}`` (as written by ``to_dict``) or flat
    ``{"name": ..., **params}``. ``None`` is ``bptt``."""
    if spec is None:
        return BPTT()
    if isinstance(spec, GradientEstimator):
        return spec
    if isinstance(spec, dict):
        d = dict(spec)
        d.pop("label", None)
        name = str(d.pop("name", "")).lower()
        params = dict(d.pop("params", None) or {})
        params.update(d)
        cls = ESTIMATOR_TYPES.get(name)
        if cls is None:
            raise _unknown(spec.get("name"))
        if cls is STE:
            params.pop("surrogate", None)
        try:
            return cls(**params)
        except TypeError:
            import inspect

            allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise ConfigError(
                f"estimator {name}: bad parameter(s) {sorted(params)}; allowed: {', '.join(allowed) or 'none'}"
            ) from None
    if not isinstance(spec, str):
        raise ConfigError("gradient estimator must be a string like 'bptt:atan:2' or a dict, "
                          f"got {type(spec).__name__}")
    parts = [p.strip() for p in spec.strip().split(":")]
    name, args = parts[0].lower(), parts[1:]
    cls = ESTIMATOR_TYPES.get(name)
    if cls is None:
        raise _unknown(spec)
    if cls is BPTT:
        return BPTT(":".join(args) if args else None)
    if len(args) > len(cls.positional):
        form = ":".join([name] + list(cls.positional)) if cls.positional else name
        raise ConfigError(f"estimator '{spec}': too many fields; write {form}")
    return cls(**dict(zip(cls.positional, args)))
