"""Run a spiking model for many timesteps in chunks of time, in bounded memory.

A converted SNN needs hundreds of timesteps, and the model's own forward pass holds every
step of every layer at once ([T*B, ...] tensors). Neurons keep their membrane between calls,
so the same dynamics can run chunk by chunk: reset once, then feed steps [0, c), [c, 2c) ...
Only encoders whose steps are independent of the step index can be cut this way: direct
(the same analog image every step) and Poisson (i.i.d. draws every step).
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from ..errors import ConfigError
from ..models import SpikingClassifier
from ..spiking.encoders import create_encoder
from ..spiking.functional import reset_states

#: Encoders whose step t does not depend on t (so time can be cut into chunks).
CHUNKABLE = ("direct", "poisson")


def check_chunkable(model: SpikingClassifier) -> None:
    if model.config.encoder not in CHUNKABLE:
        raise ConfigError(f"conversion simulates {' or '.join(CHUNKABLE)} input only, the model uses "
                          f"'{model.config.encoder}'; choose --encoder direct or poisson")


def chunk_ends(T: int, chunk: int, marks: tuple[int, ...] = ()) -> list[int]:
    """Step counts at which chunks end: every ``chunk`` steps and at each of ``marks`` (<= T), and T."""
    ends = set(range(chunk, T, chunk)) | {m for m in marks if 0 < m < T} | {T}
    return sorted(ends)


def input_chunks(model: SpikingClassifier, x: torch.Tensor, T: int, chunk: int = 16, marks: tuple[int, ...] = (),
                 seed: Optional[int] = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Reset ``model``'s state, then yield ``(steps done after this chunk, backbone input
    [c, B, C, H, W])``: the encoded, normalized images ``x`` [B, C, H, W] for ``T`` steps
    in chunks that end every ``chunk`` steps and at every step count in ``marks``. The caller
    runs ``model.backbone`` on each chunk in turn (the neurons carry their membrane over).
    ``seed`` seeds a Poisson encoder's draws."""
    check_chunkable(model)
    model.check_input(x)
    cfg = model.config
    enc = create_encoder(cfg.encoder, chunk, **cfg.encoder_options)
    if seed is not None and hasattr(enc, "manual_seed"):
        enc.manual_seed(seed)
    reset_states(model)
    done = 0
    for end in chunk_ends(T, chunk, marks):
        # end - done <= chunk: chunks end at least every ``chunk`` steps
        yield end, model.normalize(enc(x)[:end - done])
        done = end


@torch.no_grad()
def run_steps(model: SpikingClassifier, x: torch.Tensor, T: int, chunk: int = 16, marks: tuple[int, ...] = (),
              seed: Optional[int] = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Simulate ``model`` on images ``x`` [B, C, H, W] in [0, 1] for ``T`` steps.

    Yields ``(steps done so far, backbone output of this chunk [c, B, K])`` after each chunk
    (see :func:`input_chunks`). The logits of the first t steps are the sum of the outputs
    yielded up to t, divided by t (the model's readout is the mean over steps)."""
    for end, s in input_chunks(model, x, T, chunk, marks, seed):
        yield end, model.backbone(s)
