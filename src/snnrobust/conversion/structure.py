"""The converter's view of a network: its layers in the order a forward pass runs them.

ANN-to-SNN conversion (Sharmin et al. 2020, after Sengupta et al. 2019) replaces each ReLU
by an IF neuron whose firing rate stands for the ReLU's output. That is only valid for a
plain feed-forward chain of

    stage = conv/linear -> [BatchNorm] -> ReLU -> [average pooling, dropout, flatten ...]

ending with a conv/linear readout. :func:`trace_stages` runs the backbone once on a blank
image, records which leaf modules run and in what order, and checks that grammar. Anything
else gets a one-line :class:`ConfigError` naming the layer: max pooling (a max of rates is
not the rate of a max), residual adds, activations other than an ``nn.ReLU`` module, and an
activation applied as a function (``F.relu``) that the converter cannot see, which shows
up as two weight layers with no ReLU module between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.neurons import SpikingNeuron

WEIGHT = (nn.Conv2d, nn.Linear)
NORM = (nn.BatchNorm1d, nn.BatchNorm2d)
#: Layers that act on rates exactly as on activations (linear, or identity in eval mode).
PASS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.Dropout, nn.Flatten, nn.Identity)
MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class Stage:
    """One conv/linear layer and what follows it, by qualified name inside the backbone.
    ``act`` is None for the readout (the last stage)."""

    weight: str
    bn: Optional[str]
    act: Optional[str]


def show(name: str) -> str:
    """A layer's name for messages: without the ``.module`` of its time-merging wrapper."""
    return name[:-len(".module")] if name.endswith(".module") else name


def _kind(m: nn.Module) -> str:
    if isinstance(m, WEIGHT):
        return "weight"
    if isinstance(m, NORM):
        return "bn"
    if isinstance(m, (nn.ReLU, SpikingNeuron)):
        return "act"
    if isinstance(m, PASS):
        return "pass"
    return "other"


def _unsupported(name: str, m: nn.Module) -> ConfigError:
    t = type(m).__name__
    if isinstance(m, MAXPOOL):
        why = "max pooling cannot be converted (a max of firing rates is not the rate of the max); " \
              "train the ANN with average pooling (-m pool=avg)"
    elif t in ("Add", "Connect"):
        why = "residual connections are not supported by this converter; use a plain chain such as vgg5/vgg11"
    elif isinstance(m, (nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.PReLU)):
        why = "only nn.ReLU activations can be replaced by IF neurons"
    else:
        why = "the converter knows conv, linear, BatchNorm, ReLU, average pooling, dropout and flatten"
    return ConfigError(f"cannot convert layer '{show(name)}' ({t}): {why}")


def leaf_call_order(backbone: nn.Module, x_seq: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The leaf modules of ``backbone`` in the order a forward pass on ``x_seq``
    [T, B, C, H, W] calls them (each must run exactly once)."""
    order: list[tuple[str, nn.Module]] = []
    hooks = []
    for name, m in backbone.named_modules():
        if next(m.children(), None) is None and name:
            hooks.append(m.register_forward_pre_hook(lambda mod, inp, name=name: order.append((name, mod))))
    try:
        with torch.no_grad():
            backbone(x_seq)
    finally:
        for h in hooks:
            h.remove()
    seen: set[str] = set()
    for name, _ in order:
        if name in seen:
            raise ConfigError(f"cannot convert: layer '{show(name)}' runs more than once in a forward pass; "
                              "the converter needs a plain feed-forward chain")
        seen.add(name)
    return order


def trace_stages(model: nn.Module) -> list[Stage]:
    """Check that ``model`` (a :class:`~snnrobust.models.SpikingClassifier`, ANN or SNN form)
    is a convertible chain and return its stages in forward order (see the module doc)."""
    cfg = model.config
    was_training = model.training
    model.eval()
    try:
        blank = torch.zeros(1, 1, cfg.in_channels, cfg.image_size, cfg.image_size,
                            device=next(model.parameters()).device)
        order = leaf_call_order(model.backbone, blank)
    finally:
        model.train(was_training)
    called = {name for name, _ in order}
    for name, m in model.backbone.named_modules():
        if name and next(m.children(), None) is None and name not in called and any(True for _ in m.parameters()):
            raise ConfigError(f"cannot convert: layer '{show(name)}' ({type(m).__name__}) has weights but never runs "
                              "in a forward pass")
    stages: list[Stage] = []
    cur: Optional[dict] = None  # the stage being read: weight, bn, act
    for name, m in order:
        kind = _kind(m)
        if kind == "other":
            raise _unsupported(name, m)
        if kind == "weight":
            if cur is not None:
                if cur["act"] is None:
                    raise ConfigError(
                        f"cannot convert: no nn.ReLU module between layers '{show(cur['weight'])}' and "
                        f"'{show(name)}'; an activation applied as a function (F.relu) is invisible to the "
                        "converter — make it a module")
                stages.append(Stage(**cur))
            cur = {"weight": name, "bn": None, "act": None}
        elif kind == "pass":
            continue  # average pooling, dropout, flatten act on rates as on activations
        elif cur is None:
            raise ConfigError(f"cannot convert: layer '{show(name)}' ({type(m).__name__}) comes before the first "
                              "conv/linear layer")
        elif kind == "bn":
            if cur["bn"] is not None or cur["act"] is not None:
                raise ConfigError(f"cannot convert: BatchNorm '{show(name)}' does not directly follow a conv/linear "
                                  "layer, so it cannot be folded into one")
            cur["bn"] = name
        elif kind == "act":
            if cur["act"] is not None:
                raise ConfigError(f"cannot convert: two activations ('{show(cur['act'])}', '{show(name)}') after layer "
                                  f"'{show(cur['weight'])}'")
            cur["act"] = name
    if cur is None:
        raise ConfigError("cannot convert: the model has no conv/linear layer")
    if cur["act"] is not None:
        raise ConfigError(f"cannot convert: the network ends in an activation ('{show(cur['act'])}'); the last "
                          "conv/linear layer must be the readout")
    if cur["bn"] is not None:
        raise ConfigError(f"cannot convert: the readout '{show(cur['weight'])}' is followed by BatchNorm "
                          f"'{show(cur['bn'])}'; only hidden layers' BatchNorm is folded")
    stages.append(Stage(**cur))
    if len(stages) < 2:
        raise ConfigError("cannot convert: the model has no hidden layer with an nn.ReLU module; its activations "
                          "are functional (F.relu) or absent, and the converter cannot see them")
    return stages
