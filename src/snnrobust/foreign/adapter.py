"""The adapter between snnrobust's estimator machinery and one neuron of a foreign framework.

snnrobust's gradient estimators act on :class:`~snnrobust.spiking.neurons.SpikingNeuron`
objects: :func:`~snnrobust.spiking.functional.use_surrogate` sets ``neuron.surrogate`` and
:func:`~snnrobust.spiking.functional.use_estimator` sets ``neuron.estimator``, each saving the
old value and setting it back afterwards. A :class:`ForeignNeuron` is such an object that owns
no dynamics of its own: it stands next to a SpikingJelly or snnTorch neuron (the *target*) and
turns those two assignments into changes of the target:

- ``surrogate``: reading it gives a :class:`NativeSurrogate` — the target's own surrogate
  translated into a snnrobust :class:`~snnrobust.spiking.surrogates.Surrogate` with the same
  derivative, holding the target's original object. Assigning a plain ``Surrogate`` installs
  our spike function on the target (same forward comparison as the framework's, our
  derivative); assigning a ``NativeSurrogate`` puts its original object back, by identity, so
  a ``use_surrogate`` block restores the user's neuron exactly.
- ``estimator``: assigning a layer estimator (HART, RGA, BPTR, PDSG, ASSG) routes the target's
  forward through ``estimator(adapter, x_seq)``, which runs :meth:`SpikingNeuron.run` with the
  target's dynamics (:meth:`charge`, :meth:`fire`, :meth:`reset_membrane` of the framework
  adapter). Only neurons whose dynamics the adapter reproduces exactly and that see the whole
  sequence [T, B, ...] in one call (SpikingJelly multi-step IF/LIF) accept one; for the others
  :attr:`layer_estimators` holds the reason and the assignment is a one-line ConfigError.

Adapters live in the wrapper's module tree (so ``spiking_neurons(wrapper)`` finds them) but
are never called by the forward pass. The target is held outside the module tree (no
duplicate parameters in ``state_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.neurons import SpikingNeuron
from ..spiking.surrogates import Surrogate


@dataclass(frozen=True)
class NativeSurrogate(Surrogate):
    """A foreign neuron's own surrogate: the equivalent snnrobust kind/param/scale (same
    derivative, so suites can name and widen it) plus the framework's object ``native``,
    which assigning this value back to the adapter reinstalls unchanged."""

    native: Any = field(default=None, compare=False, repr=False)


class _Heaviside(torch.autograd.Function):
    """Spike forward with the framework's own comparison (``x >= 0`` in SpikingJelly, ``x > 0``
    in snnTorch), so swapping the surrogate never changes a spike; backward = the snnrobust
    surrogate's derivative."""

    @staticmethod
    def forward(ctx, x, surrogate, strict):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return ((x > 0) if strict else (x >= 0)).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * ctx.surrogate.grad(x), None, None


def heaviside(x: torch.Tensor, surrogate: Surrogate, strict: bool) -> torch.Tensor:
    """H(x) forward (``strict``: x > 0, else x >= 0); ``surrogate.grad(x)`` backward."""
    return _Heaviside.apply(x, surrogate, strict)


class SpikeModule(nn.Module):
    """A snnrobust surrogate in the shape SpikingJelly expects of ``surrogate_function`` (a
    module mapping v - threshold to spikes). A different class from SpikingJelly's own, so its
    fused kernels (built-in surrogates only) step aside and call this module per step."""

    def __init__(self, surrogate: Surrogate, strict: bool) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.strict = strict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return heaviside(x, self.surrogate, self.strict)

    def extra_repr(self) -> str:
        return f"snnrobust surrogate {self.surrogate.spec()}"


class ForeignNeuron(SpikingNeuron):
    """Base adapter. Subclasses implement :meth:`_read_native`, :meth:`_install_surrogate`,
    :meth:`_restore_surrogate` and, where layer estimators apply, the dynamics."""

    framework: str = ""

    def __init__(self, target: nn.Module, path: str) -> None:
        # SpikingNeuron.__init__ would assign a default surrogate through the property below
        # (changing the target); the adapter sets its own fields instead.
        nn.Module.__init__(self)
        object.__setattr__(self, "target", target)  # not a submodule: no duplicate state
        self.path = path
        self._native: NativeSurrogate = self._read_native()
        object.__setattr__(self, "_current", self._native)
        self._estimator: Optional[Callable] = None
        self.record_membrane = False
        self.membrane: Optional[torch.Tensor] = None
        self.v: Optional[torch.Tensor] = None
        #: None when layer estimators apply to this neuron; otherwise why they do not
        self.layer_estimators: Optional[str] = "not applicable"

    # -- naming ------------------------------------------------------------------------
    @property
    def type_name(self) -> str:
        return f"{self.framework} {type(self.target).__name__}"

    # -- the surrogate -----------------------------------------------------------------
    def _read_native(self) -> NativeSurrogate:
        raise NotImplementedError

    def _install_surrogate(self, surrogate: Surrogate) -> None:
        raise NotImplementedError

    def _restore_surrogate(self, native: Any) -> None:
        raise NotImplementedError

    @property  # type: ignore[override]
    def surrogate(self) -> Surrogate:
        return self._current

    @surrogate.setter
    def surrogate(self, value: Surrogate) -> None:
        if isinstance(value, NativeSurrogate):
            self._restore_surrogate(value.native)
        else:
            self._install_surrogate(Surrogate.parse(value))
        object.__setattr__(self, "_current", value)

    # -- the layer estimator -----------------------------------------------------------
    @property  # type: ignore[override]
    def estimator(self) -> Optional[Callable]:
        return self._estimator

    @estimator.setter
    def estimator(self, value: Optional[Callable]) -> None:
        installed = self.__dict__.get("_installed_forward")
        if installed is not None and self.target.__dict__.get("forward") is installed:
            del self.target.__dict__["forward"]  # the forward the target had before (only ours is removed)
        object.__setattr__(self, "_installed_forward", None)
        if value is not None:
            if self.layer_estimators is not None:
                name = getattr(value, "name", type(value).__name__)
                raise ConfigError(f"estimator {name} is not applicable to {self.type_name} ({self.path}): "
                                  f"{self.layer_estimators}")
            adapter = self

            def forward(x_seq: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
                return value(adapter, x_seq)

            # an instance attribute shadows the class's forward; deleting it restores the class's
            if "forward" in self.target.__dict__:
                raise ConfigError(f"{self.type_name} ({self.path}) has its own instance-level forward; layer "
                                  f"estimators cannot be applied to it")
            self.target.__dict__["forward"] = forward
            object.__setattr__(self, "_installed_forward", forward)
        object.__setattr__(self, "_estimator", value)

    def extra_repr(self) -> str:
        return f"{self.type_name} at {self.path}, surrogate={self._current.spec()}"
