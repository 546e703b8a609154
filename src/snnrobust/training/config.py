"""Typed training configuration, validated at the edge (YAML file and/or CLI flags)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from ..models import ModelConfig


@dataclass
class TrainConfig:
    """One training run. ``model`` holds ``name`` plus any option of ``create_model``."""

    model: dict = field(default_factory=lambda: {"name": "sew_resnet18"})
    method: str = "bptt"  # bptt (the model as configured) | ann (its ReLU twin, Sharmin et al. 2020's ANN recipe)
    # | hybrid (SNN-BP fine-tuning of a converted SNN, conversion/hybrid.py; set by init_from)
    init_from: Optional[str] = None  # a converted checkpoint (snnrobust convert) to fine-tune: method hybrid
    # a checkpoint of `snnrobust train` whose weights start this run (warm start, training/warm_start.py)
    init_weights: Optional[str] = None
    threshold_scale: float = 0.7  # hybrid: the converted thresholds are multiplied by this
    # a training-time defense (snnrobust.defenses): None, a name, or {name: sr|pgd-at|fast-at|rat, <options>};
    # stored resolved (every option filled in), so checkpoints and resume compare the full setting
    defense: Optional[dict] = None
    dataset: str = "mnist5k"
    data_root: Optional[str] = None
    download: bool = False  # fetch a missing dataset where the network allows
    split_seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    # Optimizer settings left at None take the method's default (METHOD_DEFAULTS); after
    # construction every one holds a value, and ``method_defaults`` says which were filled in.
    optimizer: Optional[str] = None  # adam | sgd
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    momentum: Optional[float] = None  # sgd only
    schedule: Optional[str] = None  # cosine | step | none
    step_size: Optional[int] = None  # epochs between decays (step schedule)
    gamma: Optional[float] = None  # decay factor (step schedule)
    amsgrad: Optional[bool] = None  # adam only (hybrid default: true, as Sharmin et al. 2020)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, used on CUDA only
    augment: str = "auto"  # auto (the dataset's default) | none | hflip
    max_train_samples: Optional[int] = None  # train on the first N (quick runs)
    eval_batch_size: int = 256
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm)
    fused_bptt: bool = False  # memory-lean BPTT (spiking/fused.py): 12-16 % less memory, 12-14 % slower on CPU
    recompute_blocks: bool = False  # memory-lean BPTT (models/recompute.py): blocks recomputed in backward
    neuron_kernel: bool = False  # fused neurons through the compiled CPU kernel (spiking/cpu_kernel.py; built once)
    time_segment: Optional[int] = None  # BPTT in checkpointed segments of this many steps (models/time_segments.py;
    #                                     models without BatchNorm only)
    out: str = "runs/train"

    def __post_init__(self) -> None:
        def check(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        check(isinstance(self.model, dict) and isinstance(self.model.get("name"), str),
              "config 'model' must be a mapping with a 'name' (run `snnrobust models`)")
        check(self.init_from is None or (isinstance(self.init_from, str) and self.init_from != ""),
              f"config 'init_from' must be a checkpoint path, got {self.init_from!r}")
        check(self.init_weights is None or (isinstance(self.init_weights, str) and self.init_weights != ""),
              f"config 'init_weights' must be a checkpoint path, got {self.init_weights!r}")
        check(self.init_weights is None or self.init_from is None,
              "config 'init_weights' and 'init_from' exclude each other: init_from already starts from the "
              "converted checkpoint's weights")
        if self.init_from is not None and self.method == "bptt":
            self.method = "hybrid"  # fine-tuning a converted SNN is the hybrid method
        check(self.method in METHODS, f"config 'method' must be {' or '.join(METHODS)}, got {self.method!r}")
        check((self.method == "hybrid") == (self.init_from is not None),
              "method hybrid needs init_from (a checkpoint made by `snnrobust convert`), and init_from "
              f"needs method hybrid (got method {self.method})")
        from ..defenses import resolve_defense  # here: defenses import the attack machinery

        self.defense = resolve_defense(self.defense)
        check(is_num(self.threshold_scale) and self.threshold_scale > 0,
              f"config 'threshold_scale' must be a positive number, got {self.threshold_scale!r}")
        check(is_int(self.epochs) and self.epochs >= 1, f"config 'epochs' must be a positive integer, "
                                                         f"got {self.epochs!r}")
        self._resolve_method()
        if self.amsgrad is None:  # only hybrid fine-tuning defaults to amsgrad
            self.amsgrad = False
        check(isinstance(self.dataset, str), "config 'dataset' must be a name (run `snnrobust datasets`)")
        for key in ("epochs", "batch_size", "step_size", "eval_batch_size"):
            v = getattr(self, key)
            check(is_int(v) and v >= 1, f"config '{key}' must be a positive integer, got {v!r}")
        check(is_int(self.seed) and self.seed >= 0, f"config 'seed' must be a non-negative integer, got {self.seed!r}")
        check(is_int(self.split_seed) and self.split_seed >= 0,
              f"config 'split_seed' must be a non-negative integer, got {self.split_seed!r}")
        check(self.optimizer in ("adam", "sgd"), f"config 'optimizer' must be adam or sgd, got {self.optimizer!r}")
        check(isinstance(self.amsgrad, bool), f"config 'amsgrad' must be true or false, got {self.amsgrad!r}")
        check(not (self.amsgrad and self.optimizer != "adam"), "config 'amsgrad' applies to the adam optimizer only")
        check(is_num(self.lr) and 0 < self.lr <= 10, f"config 'lr' must be in (0, 10], got {self.lr!r}")
        check(is_num(self.weight_decay) and self.weight_decay >= 0,
              f"config 'weight_decay' must be >= 0, got {self.weight_decay!r}")
        check(is_num(self.momentum) and 0 <= self.momentum < 1,
              f"config 'momentum' must be in [0, 1), got {self.momentum!r}")
        check(self.schedule in ("cosine", "step", "none"),
              f"config 'schedule' must be cosine, step or none, got {self.schedule!r}")
        check(is_num(self.gamma) and 0 < self.gamma <= 1, f"config 'gamma' must be in (0, 1], got {self.gamma!r}")
        check(isinstance(self.device, str)
              and (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")),
              f"config 'device' must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        check(isinstance(self.download, bool), f"config 'download' must be true or false, got {self.download!r}")
        check(isinstance(self.amp, bool), f"config 'amp' must be true or false, got {self.amp!r}")
        for key in ("sync_bn", "fused_bptt", "recompute_blocks", "neuron_kernel"):
            check(isinstance(getattr(self, key), bool), f"config '{key}' must be true or false, got "
                                                         f"{getattr(self, key)!r}")
        check(self.time_segment is None or (is_int(self.time_segment) and self.time_segment >= 1),
              f"config 'time_segment' must be a positive number of timesteps (or null), got {self.time_segment!r}")
        check(self.augment in ("auto", "none", "hflip"),
              f"config 'augment' must be auto, none or hflip, got {self.augment!r}")
        check(self.max_train_samples is None or (is_int(self.max_train_samples) and self.max_train_samples >= 1),
              f"config 'max_train_samples' must be a positive integer, got {self.max_train_samples!r}")
        check(isinstance(self.out, str) and self.out != "", "config 'out' must be a folder path")

    def _resolve_method(self) -> None:
        """Apply the method: ``ann`` makes the model its ANN twin (ReLU, direct input, one
        timestep) and fills every optimizer setting left at None with the method's default.
        Records what it filled in (``method_defaults``) and what it changed in the model
        (``method_model_changes``: key -> (given, now)), for the CLI to say."""
        applied: dict[str, Any] = {}
        for key, value in METHOD_DEFAULTS[self.method].items():
            if getattr(self, key) is None:
                if key == "step_size" and value is None:  # ann: two decays over the run
                    value = max(1, math.ceil(self.epochs / 3))
                setattr(self, key, value)
                applied[key] = value
        changes: dict[str, tuple] = {}
        if self.method == "ann":
            model = dict(self.model)
            for key, value in ANN_MODEL.items():
                f = ModelConfig.__dataclass_fields__[key]
                before = model.get(key, f.default_factory() if callable(f.default_factory) else f.default)
                if before != value:
                    changes[key] = (before, value)
                model[key] = value
            self.model = model
        self.method_defaults: dict[str, Any] = applied
        self.method_model_changes: dict[str, tuple] = changes

    def method_summary(self) -> list[str]:
        """Lines saying what the method set: the ANN's model settings and the optimizer
        defaults filled in (empty for BPTT, whose defaults are the long-standing ones)."""
        if self.method == "hybrid":
            filled = ", ".join(f"{k} {_show(v)}" for k, v in self.method_defaults.items()
                               if k in ("optimizer", "amsgrad", "lr", "weight_decay", "schedule"))
            return [f"method hybrid (Sharmin et al. 2020's SNN-BP): fine-tuning {self.init_from} with thresholds x "
                    f"{_show(float(self.threshold_scale))}" + (f"; defaults applied where not given: {filled}"
                                                               if filled else "")]
        if self.method != "ann":
            return []
        out = []
        changed = [f"{k} {_show(new)} (was {_show(old)})" for k, (old, new) in self.method_model_changes.items()]
        if changed:
            out.append("method ann: the model is the ANN twin (ReLU for every spiking neuron): " + ", ".join(changed))
        if self.method_defaults:
            shown = ", ".join(f"{k} {_show(v)}" + (" (ours: ceil(epochs/3); the paper gives no interval)"
                                                   if k == "step_size" else "")
                              for k, v in self.method_defaults.items())
            out.append(f"method ann: Sharmin et al. 2020's ANN defaults applied where not given: {shown}")
        given = [k for k in METHOD_DEFAULTS["ann"] if k not in self.method_defaults]
        if given:
            out.append("method ann: kept your " + ", ".join(f"{k} {_show(getattr(self, k))}" for k in given))
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError("a training config must be a mapping of keys to values")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(sorted(known))}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: "str | Path", overrides: Optional[dict] = None) -> "TrainConfig":
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(f"config file {p} is not valid YAML{where}; fix the syntax") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys to values")
        data.update(overrides or {})
        return cls.from_dict(data)


METHODS = ("bptt", "ann", "hybrid")

#: Optimizer settings a method fills in where the config leaves them None. bptt: the defaults
#: training always had. ann: the ANN recipe of Sharmin et al. 2020 (SGD, lr 1e-2, momentum 0.9,
#: weight decay 5e-4, step decay); the paper gives no decay interval, so the ANN decays by 0.1
#: every ceil(epochs / 3) epochs (step_size None below): lr 1e-2, 1e-3, 1e-4 over the run.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "bptt": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "schedule": "cosine",
             "step_size": 30, "gamma": 0.1},
    "ann": {"optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "step",
            "step_size": None, "gamma": 0.1},
    # hybrid: SNN-BP fine-tuning of Sharmin et al. 2020 (Adam with amsgrad, lr 1e-4, weight decay 5e-4)
    "hybrid": {"optimizer": "adam", "amsgrad": True, "lr": 1e-4, "weight_decay": 5e-4, "momentum": 0.9,
               "schedule": "cosine", "step_size": 30, "gamma": 0.1},
}

#: Model options method ann sets: the ANN twin (as ``models.ann_twin``) — ReLU for every spiking
#: neuron, the analog image as input, one timestep.
ANN_MODEL: dict[str, Any] = {"spiking": False, "encoder": "direct", "encoder_options": {}, "T": 1}


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)


# The demo's default model: SEW-ResNet, max pooling in the stem, IF neurons, ATan alpha=2,
# phase coding T=8 — small enough to train on a 2-core CPU in minutes.
DEMO_MODEL: dict = {
    "name": "sew_resnet",
    "layers": [1, 1, 1],
    "width": 16,
    "T": 8,
    "encoder": "phase",
    "encoder_options": {"K": 8},
    "neuron": "if",
    "surrogate": "atan:2",
    "detach_reset": True,
    "stem": "cifar",
    "stem_pool": True,
    "pool": "max",
}
