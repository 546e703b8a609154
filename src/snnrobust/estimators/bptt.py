"""Exact BPTT through a surrogate of the attacker's choice, and the straight-through special case."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator, Optional

from torch import nn

from ..spiking.functional import use_estimator, use_surrogate
from ..spiking.surrogates import Surrogate

from .base import GradientEstimator, require_neurons


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
                require_neurons(model, self.spec())
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
