"""Warm start (``snnrobust train --init-weights CKPT``): a run that begins from the weights of a
checkpoint written by ``snnrobust train``, e.g. to fine-tune a trained model under a defense.

The source is read without executing code (:func:`read_checkpoint`) and its weights are loaded
strictly: a model whose parameters do not fit them is a one-line error. Model options that keep
the weights' shapes (T, encoder, surrogate ...) may differ from the source's; the differences are
recorded. Optimizer, schedule and epochs start afresh. The new checkpoint's ``provenance`` is the
source's provenance followed by a ``"warm-start"`` step (source path, SHA-256, how the source was
trained, and this run's settings), which ``snnrobust eval`` prints; a source made from an ANN
passes its ``ann_source`` on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..io import file_sha256
from ..models import SpikingClassifier
from .checkpoint import read_checkpoint

#: Settings of this run copied into the "warm-start" step (its defense is added by name).
_RUN_KEYS = ("method", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "seed")


@dataclass
class WarmStart:
    """Where a warm-started run's first weights came from."""

    source: dict          # the source checkpoint dict
    path: str
    sha256: str
    model_changes: dict   # model option -> [source's value, this run's value]

    def step(self, train_config: dict, epoch: int, metrics: list[dict]) -> dict:
        """The "warm-start" provenance step after ``epoch`` epochs of this run."""
        src_tc = self.source.get("train_config") or {}
        src_metrics = self.source.get("metrics") or []
        src_last = src_metrics[-1] if src_metrics and isinstance(src_metrics[-1], dict) else {}
        last = metrics[-1] if metrics else {}
        return {"step": "warm-start", "init_weights": self.path, "sha256": self.sha256,
                "source_epochs": self.source.get("epoch"), "source_test_accuracy": src_last.get("test_accuracy"),
                "source_defense": _defense_name(src_tc.get("defense")),
                "model_changes": {k: list(v) for k, v in self.model_changes.items()},
                **{k: train_config.get(k) for k in _RUN_KEYS},
                "defense": _defense_name(train_config.get("defense")),
                "epochs_done": epoch, "test_accuracy": last.get("test_accuracy")}

    def changes_text(self) -> str:
        """The model options that differ from the source's, e.g. ``T 8 -> 16`` ("" when none)."""
        return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in self.model_changes.items())

    def checkpoint_fields(self, train_config: dict, epoch: int, metrics: list[dict]) -> dict:
        """Fields the warm-started checkpoint carries besides the trainer's own."""
        prior = [dict(s) for s in (self.source.get("provenance") or []) if isinstance(s, dict)]
        fields: dict[str, Any] = {"provenance": prior + [self.step(train_config, epoch, metrics)]}
        if self.source.get("ann_source") is not None:
            fields["ann_source"] = self.source["ann_source"]
        return fields


def _defense_name(defense: Any) -> str:
    if isinstance(defense, dict):
        return str(defense.get("name", "?"))
    return "none" if defense is None else str(defense)


def read_source(path: "str | Path") -> dict:
    """The source checkpoint dict, with the flag named in any error."""
    try:
        return read_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"--init-weights: {e}") from None


def warm_start(path: "str | Path", model: SpikingClassifier, load: bool = True) -> WarmStart:
    """Load the weights of checkpoint ``path`` into ``model`` (strictly; ``load=False`` only reads
    the source, for a resumed run whose own weights come next). One-line CheckpointError when the
    file is not a checkpoint or its weights do not fit ``model``."""
    src = read_source(path)
    mine, theirs = model.config.to_dict(), dict(src["model_config"])
    changes = {k: (theirs.get(k), mine.get(k)) for k in sorted(set(mine) | set(theirs))
               if theirs.get(k) != mine.get(k)}
    warm = WarmStart(src, str(path), file_sha256(path), changes)
    if load:
        try:
            model.load_state_dict(src["model_state"], strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:160]
            raise CheckpointError(f"--init-weights {path}: its weights do not fit this run's model ({first}; model "
                                  f"options that differ: {warm.changes_text() or 'none'}); use the source's model "
                                  "options") from None
    return warm
