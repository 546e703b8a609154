"""Bring your own SNN: evaluate and analyse SpikingJelly 2.x, snnTorch 1.x and plain PyTorch
spiking models with snnrobust (:func:`wrap`).

- :mod:`.detect`: which framework a model is built with; supported versions;
- :mod:`.adapter`: the adapter that lets snnrobust's estimators swap a foreign neuron's
  surrogate (and, where the dynamics are known, run layer estimators) and restore it exactly;
- :mod:`.spikingjelly`, :mod:`.snntorch`, :mod:`.plain`: each framework's neurons, surrogates
  and reset;
- :mod:`.wrapper`: :func:`wrap` and the wrapped model, images [B, C, H, W] in [0, 1] -> logits.
"""

from .detect import FRAMEWORKS, detect
from .wrapper import INPUT_FORMATS, ForeignModel, wrap

__all__ = ["FRAMEWORKS", "INPUT_FORMATS", "ForeignModel", "detect", "wrap"]
