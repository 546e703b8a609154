"""Typed training configuration, validated at the edge (YAML file and/or CLI flags)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError


@dataclass
class TrainConfig:
    """One training run. ``model`` holds ``name`` plus any option of ``create_model``."""

    model: dict = field(default_factory=lambda: {"name": "sew_resnet18"})
    dataset: str = "mnist5k"
    data_root: Optional[str] = None
    download: bool = False  # fetch a missing dataset where the network allows
    split_seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | step | none
    step_size: int = 30  # epochs between decays (step schedule)
    gamma: float = 0.1  # decay factor (step schedule)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, used on CUDA only
    augment: str = "auto"  # auto (the dataset's default) | none | hflip
    max_train_samples: Optional[int] = None  # train on the first N (quick runs)
    eval_batch_size: int = 256
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
        check(isinstance(self.dataset, str), "config 'dataset' must be a name (run `snnrobust datasets`)")
        for key in ("epochs", "batch_size", "step_size", "eval_batch_size"):
            v = getattr(self, key)
            check(is_int(v) and v >= 1, f"config '{key}' must be a positive integer, got {v!r}")
        check(is_int(self.seed) and self.seed >= 0, f"config 'seed' must be a non-negative integer, got {self.seed!r}")
        check(is_int(self.split_seed) and self.split_seed >= 0,
              f"config 'split_seed' must be a non-negative integer, got {self.split_seed!r}")
        check(self.optimizer in ("adam", "sgd"), f"config 'optimizer' must be adam or sgd, got {self.optimizer!r}")
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
        check(self.augment in ("auto", "none", "hflip"),
              f"config 'augment' must be auto, none or hflip, got {self.augment!r}")
        check(self.max_train_samples is None or (is_int(self.max_train_samples) and self.max_train_samples >= 1),
              f"config 'max_train_samples' must be a positive integer, got {self.max_train_samples!r}")
        check(isinstance(self.out, str) and self.out != "", "config 'out' must be a folder path")

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
