"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a plain dict saved with ``torch.save`` holding only tensors and JSON-like
values, and read back with ``torch.load(weights_only=True)`` — no pickled classes, so a
hostile file cannot run code. Writes go through :func:`snnrobust.io.atomic_open` (a
temporary file in the same folder, flushed to disk, then renamed over the target): a crash
never leaves a half-written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import atomic_open
from ..models import SpikingClassifier, model_from_state

FORMAT = "snnrobust-checkpoint"
VERSION = 1


def atomic_torch_save(obj: Any, path: "str | Path") -> None:
    """``torch.save(obj)`` to ``path`` atomically (:func:`snnrobust.io.atomic_open`),
    creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(path: "str | Path", payload: dict) -> None:
    """Atomically write ``payload`` (must contain model_config and model_state)."""
    atomic_torch_save({"format": FORMAT, "version": VERSION, **payload}, path)


def read_checkpoint(path: "str | Path") -> dict:
    """Read and validate a checkpoint dict (no model built). One-line errors on bad files."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; train one with `snnrobust train`")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, pickled code objects ...
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{p} is not a readable snnrobust checkpoint (corrupt, truncated, or it needs code to load: {reason}); "
            f"re-create it with `snnrobust train`"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an snnrobust checkpoint (no '{FORMAT}' marker); "
                              "use a file written by `snnrobust train`")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{p} has checkpoint version {ckpt.get('version')!r}; "
                              f"this snnrobust reads version {VERSION}")
    for key in ("model_config", "model_state"):
        if key not in ckpt:
            raise CheckpointError(f"{p} lacks '{key}'; it is incomplete — re-create it with `snnrobust train`")
    return ckpt


def load_checkpoint(path: "str | Path", map_location: "str | torch.device" = "cpu") -> tuple[SpikingClassifier, dict]:
    """Rebuild the model from a checkpoint: returns ``(model in eval mode, checkpoint dict)``."""
    ckpt = read_checkpoint(path)
    model = model_from_state(ckpt["model_config"], ckpt["model_state"], str(path))
    model.to(map_location).eval()
    return model, ckpt
