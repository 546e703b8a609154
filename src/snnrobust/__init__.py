"""snnrobust: train spiking neural networks and measure, reliably, how robust they are."""

import os as _os

# Spiking models run many small ops per timestep; with OpenMP's default busy-wait, two torch
# processes sharing a small CPU slow each other down ~30x (measured: a 64-image forward took
# 6.1 s instead of 0.2 s). A passive wait policy avoids that. Must be set before torch loads;
# a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def wrap(model, **options):
    """Wrap a SpikingJelly, snnTorch or plain PyTorch SNN for evaluation: see
    :func:`snnrobust.foreign.wrap` (imported lazily so ``import snnrobust`` stays light)."""
    from .foreign import wrap as _wrap

    return _wrap(model, **options)
