"""Hybrid SNN-BP fine-tuning (Sharmin et al. 2020's SNN-BP, after Rathi et al. 2020).

``snnrobust train --init-from CONVERTED`` starts BPTT training from a converted SNN:

- the converted weights exactly, and its per-layer thresholds times ``threshold_scale``
  (0.7 in the paper: lower thresholds give more spikes, so fewer timesteps suffice);
- LIF neurons with leak factor 0.99 (the paper's; ``-m leak=...``) and soft reset;
- the paper's surrogate (0.3/theta) max(0, 1 - |U/theta - 1|) relative to each layer's
  (scaled) threshold: ``triangle:1:0.3`` with ``surrogate_relative``;
- the timesteps given with ``-m T=...`` (else the converted model's);
- Adam with amsgrad, lr 1e-4, weight decay 5e-4 (:data:`TRAIN_DEFAULTS`, where not given).

The architecture must be the converted one (any architecture option that differs is a
one-line error), and the checkpoint keeps the converted model's ``ann_source`` and its
provenance with a "hybrid-fine-tuning" step appended.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import CheckpointError, ConfigError
from ..io import file_sha256
from ..models import SpikingClassifier, model_from_state
from .provenance import has_ann_source

#: Optimizer settings of hybrid fine-tuning where the config leaves them unset (Sharmin et al. 2020).
TRAIN_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "amsgrad": True, "lr": 1e-4, "weight_decay": 5e-4}
#: Model settings of hybrid fine-tuning where the model options leave them unset.
MODEL_DEFAULTS: dict[str, Any] = {"neuron": "lif", "leak": 0.99, "reset": "soft", "surrogate": "triangle:1:0.3",
                                  "surrogate_relative": True}
#: Model options fine-tuning may change; every other option is the converted architecture's.
CHANGEABLE = ("T", "neuron", "leak", "reset", "v_reset", "detach_reset", "surrogate", "surrogate_relative",
              "encoder", "encoder_options")
DEFAULT_THRESHOLD_SCALE = 0.7


def read_converted(path: "str | Path") -> dict:
    """Read ``path`` and check that it is a converted (or already fine-tuned) SNN checkpoint."""
    from ..training.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    steps = ckpt.get("provenance") or []
    converted = has_ann_source(ckpt) and any(isinstance(s, dict) and s.get("step") == "conversion" for s in steps)
    if not converted:
        raise ConfigError(f"--init-from {path} is not a converted SNN checkpoint (it has no ANN source and "
                          "conversion step); make one with `snnrobust convert ANN_CHECKPOINT --out DIR`")
    if not ckpt["model_config"].get("thresholds"):
        raise CheckpointError(f"--init-from {path} has no per-layer thresholds in its model config")
    return ckpt


def _same(a: Any, b: Any) -> bool:
    """Equal as config values (a tuple and a list with the same items are the same)."""
    return (list(a) if isinstance(a, (list, tuple)) else a) == (list(b) if isinstance(b, (list, tuple)) else b)


@dataclass
class HybridInit:
    """The model to fine-tune and where it came from."""

    model: SpikingClassifier
    source: dict        # the converted checkpoint dict
    path: str
    sha256: str
    threshold_scale: float

    def step(self, train_config: dict, epoch: int, metrics: list[dict]) -> dict:
        """The "hybrid-fine-tuning" provenance step after ``epoch`` epochs."""
        cfg = self.model.config
        last = metrics[-1] if metrics else {}
        return {"step": "hybrid-fine-tuning", "init_from": self.path, "sha256": self.sha256,
                "threshold_scale": self.threshold_scale, "thresholds": list(cfg.thresholds or []),
                "neuron": cfg.neuron, "leak": cfg.leak, "T": cfg.T, "encoder": cfg.encoder,
                "surrogate": cfg.surrogate + (" (relative to each threshold)" if cfg.surrogate_relative else ""),
                **{k: train_config.get(k) for k in ("optimizer", "amsgrad", "lr", "weight_decay", "schedule",
                                                    "epochs", "batch_size", "seed")},
                "epochs_done": epoch, "test_accuracy": last.get("test_accuracy")}

    def checkpoint_fields(self, train_config: dict, epoch: int, metrics: list[dict]) -> dict:
        """Fields the fine-tuned checkpoint carries besides the trainer's own."""
        return {"ann_source": self.source["ann_source"],
                "provenance": [dict(s) for s in self.source["provenance"]] + [self.step(train_config, epoch, metrics)]}


def hybrid_config(src: dict, model_options: dict, threshold_scale: float = DEFAULT_THRESHOLD_SCALE,
                  info: Optional[Any] = None, where: str = "--init-from") -> dict:
    """The model config hybrid fine-tuning starts from, given the converted model's config
    ``src`` (a dict with per-layer ``thresholds``): options in :data:`CHANGEABLE` of
    ``model_options`` (``name`` plus model options, as in ``TrainConfig.model``) are applied,
    any other must equal the converted model's; thresholds are scaled by ``threshold_scale``.
    ``info`` (a ``DatasetInfo``) is checked against the model's input shape and classes."""
    if not (isinstance(threshold_scale, (int, float)) and not isinstance(threshold_scale, bool)
            and math.isfinite(threshold_scale) and threshold_scale > 0):
        raise ConfigError(f"--threshold-scale must be a positive number, got {threshold_scale!r}")
    src = dict(src)
    opts = dict(model_options)
    name = opts.pop("name", src["name"])
    if name != src["name"]:
        raise ConfigError(f"{where} is a converted '{src['name']}', not '{name}': fine-tuning "
                          "starts from its weights, so the architecture cannot change")
    arch = dict(src.get("arch") or {})
    for k in list(opts):
        if k in CHANGEABLE:
            continue
        here = src if k in src else arch if k in arch else None
        if here is None:
            raise ConfigError(f"model '{name}' has no option '{k}'")
        if not _same(here[k], opts[k]):
            raise ConfigError(f"{where} has {k}={here[k]!r} but the requested model has "
                              f"{k}={opts[k]!r}: a different architecture; drop the option or convert a matching ANN")
        opts.pop(k)
    d = dict(src)
    d.update(MODEL_DEFAULTS)
    if opts.get("neuron") == "if" and "leak" not in opts:
        d["leak"] = None  # IF has no leak
    d.update(opts)
    d["thresholds"] = [float(t) * float(threshold_scale) for t in src["thresholds"]]
    if info is not None:
        for key in ("in_channels", "num_classes", "image_size"):
            if d[key] != getattr(info, key):
                raise ConfigError(f"{where} expects {key}={d[key]}, dataset {info.name} has "
                                  f"{getattr(info, key)}; train on the dataset it was converted for")
    return d


def hybrid_model(init_from: "str | Path", model_options: dict, threshold_scale: float = DEFAULT_THRESHOLD_SCALE,
                 info: Optional[Any] = None) -> HybridInit:
    """The model that hybrid fine-tuning starts from (module docstring; the config is
    :func:`hybrid_config` of the converted checkpoint's)."""
    ckpt = read_converted(init_from)
    d = hybrid_config(ckpt["model_config"], model_options, threshold_scale, info, where=f"--init-from {init_from}")
    model = model_from_state(d, ckpt["model_state"], f"--init-from {init_from}", config_error=ConfigError)
    return HybridInit(model, ckpt, str(init_from), file_sha256(init_from), float(threshold_scale))
