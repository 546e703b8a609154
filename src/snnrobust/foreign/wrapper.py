"""``wrap``: a user's SpikingJelly, snnTorch or plain PyTorch SNN as a model snnrobust evaluates.

The wrapped model (:class:`ForeignModel`) maps images x [B, C, H, W] in [0, 1] to logits
[B, K], clearing the user's model's state before every forward pass, so every evaluation
entry point (``evaluate``, ``Victim``, suites, diagnostics, the sparsity analysis) takes it
like one of snnrobust's own models. Where time lives (``input_format``):

- ``"image"``: the model takes x and runs its own time loop (and encoding) inside ``forward``;
- ``"multi-step"``: the model takes the sequence [T, B, C, H, W] in one call (SpikingJelly
  ``step_mode="m"``) and returns [T, B, K] (averaged over T) or [B, K];
- ``"single-step"``: the wrapper calls the model once per step with [B, C, H, W] (SpikingJelly
  ``step_mode="s"``, an snnTorch network without its own loop) and averages the T outputs.

The sequence is ``encoder(x)`` [T, B, ...] (default: x repeated T times, direct coding). An
encoder without a gradient (SpikingJelly's Poisson encoder, a thresholding) gets a
straight-through backward (dL/dx = sum over t of dL/dx_t), and the result says so
(``model.config.encoder_backward``).

The user's model is never changed: the attacker's estimator is applied through one
:class:`~snnrobust.foreign.adapter.ForeignNeuron` per foreign neuron, and every swap is
undone when the estimator's ``with`` block ends, also after an exception.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..estimators import ESTIMATOR_TYPES, LayerEstimator
from . import plain
from .adapter import ForeignNeuron
from .detect import check_framework, detect, require_version

INPUT_FORMATS = ("image", "multi-step", "single-step")
_FORMAT_ALIASES = {"image": "image", "static": "image", "multi-step": "multi-step", "multistep": "multi-step",
                   "m": "multi-step", "single-step": "single-step", "singlestep": "single-step", "s": "single-step",
                   "auto": "auto"}
LAYER_ESTIMATORS = tuple(n for n, c in ESTIMATOR_TYPES.items() if issubclass(c, LayerEstimator))


@dataclass
class ForeignConfig:
    """What the result records about a wrapped model (``result.model["config"]``)."""

    framework: str
    framework_version: Optional[str]
    model_class: str
    input_format: str
    time_steps: Optional[int]
    encoder: str
    encoder_backward: str
    stochastic: bool
    reset: str
    neurons: dict = field(default_factory=dict)          # neuron type -> count
    surrogates: dict = field(default_factory=dict)       # neuron type -> surrogate spec(s)
    estimators_not_applicable: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _StraightThrough(torch.autograd.Function):
    """Forward: the encoder's sequence; backward: each step's gradient to the pixels as if the
    step were x itself (summed over the T steps)."""

    @staticmethod
    def forward(ctx, x, seq):  # type: ignore[override]
        return seq.view_as(seq)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g.sum(0), None


class ForeignModel(nn.Module):
    """A wrapped foreign SNN. Build it with :func:`wrap`."""

    def __init__(self, model: nn.Module, *, framework: str, version: Optional[str], input_format: str,
                 time_steps: Optional[int], encoder: Optional[Callable], stochastic: bool,
                 reset: Callable[[nn.Module], None], reset_label: str, neurons: list[ForeignNeuron],
                 not_applicable: dict, notes: list) -> None:
        super().__init__()
        self.model = model
        # adapters sit in the module tree so snnrobust's estimator machinery finds them; they are
        # never called in forward
        self.neurons = nn.ModuleList(neurons)
        self.framework = framework
        self.input_format = input_format
        self.time_steps = time_steps
        self.encode_fn = encoder
        self.stochastic = bool(stochastic)   # read by the Victim: EOT and vote for a random encoder
        self._reset_fn = reset
        #: estimator name -> why it does not apply (the reliable suite leaves these out, saying so)
        self.estimator_limits = dict(not_applicable)
        types: dict[str, int] = {}
        sgs: dict[str, list] = {}
        for n in neurons:
            types[n.type_name] = types.get(n.type_name, 0) + 1
            spec = n.surrogate.spec()
            sgs.setdefault(n.type_name, [])
            if spec not in sgs[n.type_name]:
                sgs[n.type_name].append(spec)
        self.config = ForeignConfig(
            framework=framework, framework_version=version, model_class=type(model).__name__,
            input_format=input_format, time_steps=time_steps,
            encoder="direct (x repeated T times)" if encoder is None and input_format != "image" else (
                "inside the model" if encoder is None else getattr(encoder, "__qualname__", type(encoder).__name__)),
            encoder_backward="exact" if encoder is None else "not yet run", stochastic=self.stochastic,
            reset=reset_label, neurons=types, surrogates={k: ", ".join(v) for k, v in sgs.items()},
            estimators_not_applicable=dict(not_applicable), notes=list(notes))

    # -- state -------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Clear the user's model's state (snnrobust's reset_states calls this before every pass)."""
        self._reset_fn(self.model)

    # -- forward -----------------------------------------------------------------------
    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """The input sequence [T, B, C, H, W] for images ``x`` [B, C, H, W] in [0, 1]."""
        T = int(self.time_steps)  # type: ignore[arg-type]
        if self.encode_fn is None:
            return x.unsqueeze(0).expand(T, *x.shape)
        seq = self.encode_fn(x)
        if not isinstance(seq, torch.Tensor) or seq.dim() != x.dim() + 1 or seq.shape[1:] != x.shape:
            got = list(seq.shape) if isinstance(seq, torch.Tensor) else type(seq).__name__
            raise ConfigError(f"the encoder must map x {list(x.shape)} to a sequence [T, *x.shape], got {got}")
        if x.requires_grad and torch.is_grad_enabled():
            if seq.requires_grad:
                self.config.encoder_backward = "exact (the encoder's own gradient)"
            else:
                self.config.encoder_backward = ("straight-through (the encoder gives no gradient: dL/dx = sum over "
                                                "t of dL/dx_t)")
                seq = _StraightThrough.apply(x, seq)
        return seq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: images [B, C, H, W] in [0, 1] -> logits [B, K] (mean over time steps)."""
        self._reset_fn(self.model)
        if self.input_format == "image":
            out = self.model(x)
            return self._logits(out, x.shape[0], over_time=False)
        seq = self.sequence(x)
        if self.input_format == "multi-step":
            return self._logits(self.model(seq), x.shape[0], over_time=True)
        total = None
        for t in range(seq.shape[0]):
            o = self._logits(self.model(seq[t]), x.shape[0], over_time=False)
            total = o if total is None else total + o
        assert total is not None
        return total / seq.shape[0]

    def _logits(self, out: Any, B: int, over_time: bool) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise ConfigError(f"the model returned a {type(out).__name__}, not a tensor; wrap a model whose forward "
                              f"returns logits [B, K] (or [T, B, K]), e.g. the spike counts or the output membrane")
        if over_time and out.dim() == 3 and out.shape[1] == B:
            out = out.mean(0)
        if out.dim() != 2 or out.shape[0] != B:
            raise ConfigError(f"the model returned shape {list(out.shape)}; logits must be [B, K] with B={B}"
                              + (" (or [T, B, K])" if over_time else ""))
        return out

    def extra_repr(self) -> str:
        return (f"framework={self.framework}, input_format={self.input_format}, time_steps={self.time_steps}, "
                f"neurons={len(self.neurons)}")


def _probe_stochastic(encoder: Callable) -> bool:
    """Whether ``encoder`` gives different sequences for the same input (e.g. Poisson)."""
    declared = getattr(encoder, "stochastic", None)
    if isinstance(declared, bool):
        return declared
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            a, b = encoder(x), encoder(x)
    except Exception as e:  # noqa: BLE001 - the user's code; say what to do instead
        raise ConfigError(f"could not probe the encoder on a [2, 1, 4, 4] input ({type(e).__name__}); pass "
                          f"stochastic=True or False to wrap()") from None
    return not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b))


def wrap(model: nn.Module, *, framework: str = "auto", time_steps: Optional[int] = None,
         encoder: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, input_format: str = "auto",
         reset: Optional[Callable[[nn.Module], None]] = None, stochastic: Optional[bool] = None) -> ForeignModel:
    """Wrap a user's SNN so snnrobust can evaluate it (see the module docstring).

    ``framework``: ``"auto"`` (from the modules' classes), ``"spikingjelly"`` (2.x),
    ``"snntorch"`` (1.x) or ``"torch"`` (plain PyTorch). ``time_steps`` T: needed for the
    ``multi-step`` and ``single-step`` formats. ``encoder``: x [B, C, H, W] -> [T, B, C, H, W]
    (default: direct, x repeated). ``input_format``: ``"auto"`` (``"image"`` without
    ``time_steps``; with it, SpikingJelly's step mode, ``"single-step"`` for snnTorch),
    ``"image"``, ``"multi-step"`` or ``"single-step"``. ``reset(model)``: clears the model's state
    (default: SpikingJelly's ``functional.reset_net``, zeroing snnTorch membranes; none for plain
    PyTorch). ``stochastic``: whether the encoder is random (default: probed)."""
    fw = check_framework(framework)
    found = detect(model)
    if fw == "auto":
        fw = found
    elif fw != "torch" and found != fw:
        raise ConfigError(f"framework={fw} given, but the model has no {fw} modules (found: {found})")
    if any(type(m).__module__.startswith("snnrobust.") for m in model.modules()):
        raise ConfigError("this is a snnrobust model; evaluate it directly, without wrap()")
    if time_steps is not None and (isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1):
        raise ConfigError(f"time_steps must be a positive integer, got {time_steps!r}")
    fmt = _FORMAT_ALIASES.get(str(input_format).lower())
    if fmt is None:
        raise ConfigError(f"unknown input_format {input_format!r}; choose one of: auto, {', '.join(INPUT_FORMATS)}")
    if encoder is not None and not callable(encoder):
        raise ConfigError(f"encoder must be callable (x [B, C, H, W] -> [T, B, C, H, W]), got {type(encoder).__name__}")
    if reset is not None and not callable(reset):
        raise ConfigError(f"reset must be a function of the model, got {type(reset).__name__}")

    notes: list[str] = []
    version: Optional[str] = None
    neurons: list[ForeignNeuron] = []
    not_applicable: dict[str, str] = {}
    if fw == "spikingjelly":
        from . import spikingjelly as sj

        version = require_version(fw)
        neurons = list(sj.adapters(model))
        modes = sj.step_modes(model)
        if fmt == "auto":
            fmt = "image" if time_steps is None else ("multi-step" if modes == {"m"} else "single-step")
        if fmt == "multi-step" and "s" in modes:
            raise ConfigError("input_format multi-step, but some SpikingJelly neurons are in single-step mode; call "
                              "functional.set_step_mode(net, 'm') or use input_format='single-step'")
        default_reset, reset_label = sj.reset, "spikingjelly.activation_based.functional.reset_net"
    elif fw == "snntorch":
        from . import snntorch as st

        version = require_version(fw)
        neurons = list(st.adapters(model))
        if fmt == "auto":
            fmt = "image" if time_steps is None else "single-step"
        default_reset, reset_label = st.reset, "membrane of every snnTorch Leaky cleared"
    else:
        if fmt == "auto":
            if time_steps is not None:
                raise ConfigError("a plain PyTorch model with time_steps needs input_format='multi-step' or "
                                  "'single-step' (how the model takes its time steps)")
            fmt = "image"
        note = plain.reset_note(reset)
        if note:
            notes.append(note)

        def default_reset(m: nn.Module) -> None:
            return None

        reset_label = "none (the model resets itself)"
        for name in ESTIMATOR_TYPES:
            if name != "bptt":
                not_applicable[name] = plain.REASON
    if fmt != "image" and time_steps is None:
        raise ConfigError(f"input_format {fmt} needs time_steps (the number of steps T)")
    if fmt == "image" and encoder is not None:
        raise ConfigError("an encoder needs input_format multi-step or single-step (with input_format image the "
                          "model encodes x itself)")
    if fw != "torch" and not neurons:
        raise ConfigError(f"no {fw} spiking neurons found in {type(model).__name__}")
    for n in neurons:
        if n.layer_estimators is not None:
            for name in LAYER_ESTIMATORS:
                not_applicable.setdefault(name, f"not applicable to {n.type_name} ({n.path}): {n.layer_estimators}")
    if reset is not None:
        use_reset, reset_label = reset, getattr(reset, "__qualname__", "the user's reset function")
    else:
        use_reset = default_reset
    if stochastic is not None:
        random_enc = bool(stochastic)
    else:
        random_enc = False if encoder is None else _probe_stochastic(encoder)
    return ForeignModel(model, framework=fw, version=version, input_format=fmt, time_steps=time_steps, encoder=encoder,
                        stochastic=random_enc, reset=use_reset, reset_label=reset_label, neurons=neurons,
                        not_applicable=not_applicable, notes=notes)
