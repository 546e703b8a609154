"""A plain PyTorch spiking model: neurons snnrobust cannot see into.

A model written directly in PyTorch (its own neuron modules and surrogate autograd
functions) is evaluated through its own gradient only: snnrobust cannot find its spike
functions, so it cannot swap their surrogate, and no layer estimator applies. Its state is
cleared by the ``reset`` function the user gives, or by the model itself in ``forward``;
snnrobust does not guess (a module's ``reset()`` method may mean something else, such as
re-initializing weights).
"""

from __future__ import annotations

from typing import Callable, Optional

from torch import nn

REASON = ("a plain PyTorch model's spike functions are opaque to snnrobust, so only the model's own "
          "gradient (bptt) is available")


def reset_note(reset: Optional[Callable[[nn.Module], None]]) -> Optional[str]:
    """What the result should say about how the model's state is cleared."""
    if reset is None:
        return "no reset function given: the model must clear its own state at the start of forward"
    return None
