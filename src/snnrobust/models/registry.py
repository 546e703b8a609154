"""Model registry: ``create_model(name, **options)`` builds any architecture.

A builder is registered with :func:`register_model`; it takes the :class:`ModelConfig`
plus its own keyword options and returns a backbone mapping [T, B, C, H, W] to per-step
logits [T, B, num_classes]. Unknown options are rejected with a one-line error.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..errors import CheckpointError, ConfigError
from .classifier import SpikingClassifier
from .config import ModelConfig

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Builder
    description: str
    fixed: dict  # options this name fixes (e.g. layers for sew_resnet18)
    default_width: int

    def arch_options(self) -> dict[str, Any]:
        """The builder's own options with their defaults (after this entry's fixed ones)."""
        sig = inspect.signature(self.builder)
        opts = {p.name: p.default for p in list(sig.parameters.values())[1:]}
        opts.update(self.fixed)
        return opts


MODELS: dict[str, ModelEntry] = {}


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


def register_model(name: str, description: str, default_width: int = 64, **fixed: Any):
    def deco(builder: Builder) -> Builder:
        MODELS[name] = ModelEntry(name, builder, description, fixed, default_width)
        return builder

    return deco


def list_models() -> list[ModelEntry]:
    _ensure_loaded()
    return [MODELS[k] for k in sorted(MODELS)]


def _ensure_loaded() -> None:
    from . import resnets, vgg, wrn  # noqa: F401  (registration side effect)


def split_options(name: str, options: dict) -> tuple[dict, dict]:
    """Split flat options into (common ModelConfig fields, architecture options)."""
    _ensure_loaded()
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; run `snnrobust models` to list them")
    entry = MODELS[name]
    common_keys = ModelConfig.common_keys()
    arch_allowed = entry.arch_options()
    common, arch = {}, dict(options.pop("arch", None) or {})
    for k, v in options.items():
        if k in common_keys:
            common[k] = v
        elif k in arch_allowed:
            arch[k] = v
        else:
            raise ConfigError(
                f"model '{name}' has no option '{k}'; common options: {', '.join(sorted(common_keys))}; "
                f"its own: {', '.join(sorted(arch_allowed)) or 'none'}"
            )
    for k in arch:
        if k not in arch_allowed:
            raise ConfigError(f"model '{name}' has no option '{k}'; its own: {', '.join(sorted(arch_allowed))}")
        if k in entry.fixed and _norm(arch[k]) != _norm(entry.fixed[k]):
            raise ConfigError(f"model '{name}' fixes {k}={entry.fixed[k]!r}; use the generic builder to change it")
    return common, arch


def create_model(name: str, **options: Any) -> SpikingClassifier:
    """Build model ``name``; options are ModelConfig fields or the architecture's own."""
    common, arch = split_options(name, dict(options))
    entry = MODELS[name]
    full_arch = entry.arch_options()
    full_arch.update(arch)
    cfg = ModelConfig(name=name, arch=full_arch, **common)
    return build_from_config(cfg)


def build_from_config(cfg: ModelConfig) -> SpikingClassifier:
    _ensure_loaded()
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; run `snnrobust models` to list them")
    entry = MODELS[cfg.name]
    if cfg.width is None:
        cfg.width = entry.default_width
    arch = entry.arch_options()
    unknown = set(cfg.arch) - set(arch)
    if unknown:
        raise ConfigError(f"model '{cfg.name}' has no option(s) {sorted(unknown)}")
    arch.update(cfg.arch)
    cfg.arch = arch
    try:
        backbone = entry.builder(cfg, **arch)
    except ConfigError:
        raise
    except (ValueError, RuntimeError) as e:  # e.g. an image too small for the network's strides
        raise ConfigError(f"model '{cfg.name}' cannot be built with these options: {str(e).splitlines()[0]}") from e
    if cfg.spiking and cfg.thresholds is not None:
        apply_thresholds(cfg, backbone)
    return SpikingClassifier(cfg, backbone)


def apply_thresholds(cfg: ModelConfig, backbone: nn.Module) -> None:
    """Give the spiking neuron layers of ``backbone``, in module (= forward) order, the
    per-layer thresholds ``cfg.thresholds`` (and, with ``surrogate_relative``, surrogates
    scaled to them). One-line error when the count does not match the architecture."""
    from ..spiking.functional import spiking_neurons

    neurons = spiking_neurons(backbone)
    if len(neurons) != len(cfg.thresholds):
        raise ConfigError(f"model option thresholds lists {len(cfg.thresholds)} values but model '{cfg.name}' "
                          f"has {len(neurons)} spiking layers; give one threshold per layer")
    for neuron, th in zip(neurons, cfg.thresholds):
        neuron.threshold = float(th)
        neuron.surrogate = cfg.neuron_surrogate(th)


def model_from_dict(d: dict) -> SpikingClassifier:
    """Rebuild a model from ``ModelConfig.to_dict()`` output (checkpoints)."""
    return build_from_config(ModelConfig.from_dict(dict(d)))


def model_from_state(config: dict, state: dict, where: str,
                     config_error: type[Exception] = CheckpointError) -> SpikingClassifier:
    """The model of ``config`` (``ModelConfig.to_dict()`` output) with the weights ``state``
    loaded strictly; what a checkpoint, a converted model and a source ANN are rebuilt by. A
    config not valid here raises ``config_error``, weights that do not fit a CheckpointError,
    each one line starting with ``where``."""
    try:
        model = model_from_dict(config)
    except ConfigError as e:
        raise config_error(f"{where}: its model config is not valid here ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:160]
        raise CheckpointError(f"{where}: its weights do not fit its model config ({first})") from None
    return model
