"""Where a converted or fine-tuned SNN came from, stored in its checkpoint.

Two checkpoint fields, both plain tensors and JSON-like values (``weights_only`` loading):

``ckpt["ann_source"]``
    ``{"model_config": <the ANN's ModelConfig dict>, "model_state": <its state_dict as
    trained, BatchNorm not folded>, "checkpoint": <path of the ANN checkpoint>, "sha256":
    <that file's sha256>}`` — enough to rebuild the source ANN (:func:`load_ann_source`),
    e.g. to attack the SNN through it.
``ckpt["provenance"]``
    A list of steps in order, each a dict with ``"step"``: ``"ann-training"`` (the ANN's
    checkpoint, hash and training settings), ``"conversion"`` (method, T, calibration
    size, percentile, thresholds ...), ``"hybrid-fine-tuning"`` (threshold scale, leak, T,
    optimizer ...), ``"warm-start"`` (``train --init-weights``: the source checkpoint, its
    hash and training, this run's settings; training/warm_start.py). ``snnrobust eval`` prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..io import file_sha256
from ..models import SpikingClassifier

#: Training settings copied into the "ann-training" step (when the ANN checkpoint has them).
_TRAIN_KEYS = ("method", "dataset", "split_seed", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
               "momentum", "schedule", "step_size", "gamma", "seed", "max_train_samples")


def ann_source(ckpt: dict, path: "str | Path") -> dict:
    """The ``ann_source`` field for an SNN made from the ANN checkpoint ``ckpt`` read from ``path``."""
    return {"model_config": ckpt["model_config"], "model_state": ckpt["model_state"],
            "checkpoint": str(path), "sha256": file_sha256(path)}


def ann_training_step(ckpt: dict, source: dict) -> dict:
    """The "ann-training" provenance step of the ANN checkpoint ``ckpt``."""
    tc = ckpt.get("train_config") or {}
    metrics = ckpt.get("metrics") or []
    last = metrics[-1] if metrics and isinstance(metrics[-1], dict) else {}
    step: dict[str, Any] = {"step": "ann-training", "checkpoint": source["checkpoint"], "sha256": source["sha256"],
                            "model": ckpt["model_config"].get("name"), "epochs_done": ckpt.get("epoch"),
                            "test_accuracy": last.get("test_accuracy")}
    step.update({k: tc[k] for k in _TRAIN_KEYS if k in tc})
    return step


def prior_steps(ckpt: dict, source: dict) -> list[dict]:
    """The provenance that the ANN checkpoint already carries, with an "ann-training" step
    for the ANN itself when it has none."""
    steps = [dict(s) for s in (ckpt.get("provenance") or []) if isinstance(s, dict)]
    if not any(s.get("step") == "ann-training" for s in steps):
        steps.append(ann_training_step(ckpt, source))
    return steps


def has_ann_source(ckpt: dict) -> bool:
    src = ckpt.get("ann_source")
    return isinstance(src, dict) and "model_config" in src and "model_state" in src


def load_ann_source(ckpt: dict) -> SpikingClassifier:
    """Rebuild the source ANN of a converted or hybrid SNN checkpoint dict (as returned by
    ``load_checkpoint``/``read_checkpoint``): its weights as trained, in eval mode, on the CPU.
    One-line :class:`CheckpointError` when the checkpoint has no ANN source."""
    if not has_ann_source(ckpt):
        raise CheckpointError("this checkpoint has no ANN source (ckpt['ann_source']); only SNNs made by "
                              "`snnrobust convert` (and fine-tuned from one) have one")
    from ..estimators.source_ann import ann_from_source  # the one builder (source-ann uses it too)

    return ann_from_source(ckpt["ann_source"])


def describe_step(step: dict) -> str:
    """One line for a provenance step (``snnrobust eval``)."""
    kind = step.get("step", "?")
    skip = {"step", "model_state", "thresholds", "train_config"}
    parts = []
    for k, v in step.items():
        if k in skip or v is None or isinstance(v, (dict, list)):
            continue
        if k == "sha256":
            v = str(v)[:12]
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    changes = step.get("model_changes")
    if isinstance(changes, dict) and changes:  # warm start: model options changed from the source's
        parts.append("model changes: " + ", ".join(f"{k} {v[0]!r}->{v[1]!r}" if isinstance(v, list) and len(v) == 2
                                                    else f"{k} {v!r}" for k, v in changes.items()))
    if isinstance(step.get("thresholds"), list):
        parts.append("thresholds=[" + ", ".join(f"{t:.3g}" for t in step["thresholds"]) + "]")
    return f"{kind}: " + ", ".join(parts)
