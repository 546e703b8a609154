"""``source-ann``: BPDA for a converted or hybrid SNN — forward through the SNN, backward
through the ANN it was converted from.

A converted SNN (and one fine-tuned from it) approximates its source ANN: layer by layer the
spike rates track the ANN's ReLU activations. Attacking such a model through a surrogate of its
spikes ignores that smooth twin; BPDA (Athalye et al. 2018) uses it instead: the forward pass is
the SNN's own, so the loss, the predictions and every success are the SNN's, and on the backward
pass the SNN's Jacobian d logits / dx is replaced by the source ANN's.

Which loss gradient: with ``l_snn = snn(x)`` [B, K] and ``l_ann = ann(x)`` [B, K], the attack
maximizes ``L(l_snn, y)``, and the estimator returns

    dL/dx := J_ann(x)^T . dL/dl |_(l = l_snn)

— the loss and its gradient in logit space are evaluated at the SNN's logits (the point whose
loss the attack is raising: CE's softmax weights, DLR's runner-up class and a targeted loss's
margin all refer to the SNN's current prediction), and only the Jacobian is the ANN's. This is
what ``snn(x).detach() + ann(x) - ann(x).detach()`` gives, implemented here so that the forward
value is bit-identical to the SNN's (``a + b - b`` is not ``a`` in floating point). Where the
logit gradient does not depend on the logits (a loss linear in them, e.g. minus the true
logit) or where the SNN reproduces the ANN's logits, this is exactly the ANN's own input
gradient of the same loss. Using ``dL/dl`` at the ANN's logits instead would pair the SNN's
loss value with the gradient of a different point (another runner-up class, another softmax)
and would make the gradient independent of everything the SNN does: that is a transfer attack
from the ANN, which the ``transfer`` attack already measures.

The ANN comes from the checkpoint's ``ann_source`` (written by conversion): ``{"model_config":
<the ANN's ModelConfig dict>, "model_state": <its state_dict>, "checkpoint": <path>, "sha256":
<hex>}``; :func:`ann_from_source` builds it. Shapes: images x [B, C, H, W] in [0, 1] -> logits
[B, K]; the ANN must map the same images to the same K classes.
"""

from __future__ import annotations

from contextlib import contextmanager
from itertools import chain
from typing import Any, Iterator, Optional

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from .base import GradientEstimator

#: The one-line reason why ``source-ann`` cannot run on a model without a source ANN.
NO_SOURCE = ("estimator source-ann needs the source ANN of a converted or hybrid SNN, and this model has none "
             "(its checkpoint holds no ann_source); choose another estimator (e.g. bptt, ste, rga)")
#: ... nor on the encoded spike tensor (perturb=spikes).
NO_SPIKES = ("estimator source-ann differentiates the source ANN, which reads pixels: it cannot attack the encoded "
             "spike tensor (perturb=spikes); use perturb=pixels")


def ann_from_source(ann_source: Any, where: str = "the checkpoint's ann_source") -> nn.Module:
    """The source ANN (eval mode, on the CPU) from a checkpoint's ``ann_source`` mapping (see the
    module docstring). One-line :class:`CheckpointError` when it is malformed, not an ANN, or its
    weights do not fit its config."""
    from ..models import model_from_state

    if not isinstance(ann_source, dict) or not isinstance(ann_source.get("model_config"), dict) \
            or not isinstance(ann_source.get("model_state"), dict):
        raise CheckpointError(f"{where} must be a mapping with 'model_config' and 'model_state' (written by "
                              "`snnrobust convert`); re-create the checkpoint")
    if ann_source["model_config"].get("spiking", True):
        raise CheckpointError(f"{where} holds a spiking model, not an ANN; re-create the checkpoint from an ANN")
    ann = model_from_state(ann_source["model_config"], ann_source["model_state"], where)
    return ann.eval()


def source_label(ann_source: Any) -> str:
    """How results name the source ANN: its checkpoint and the first 12 hex digits of its hash."""
    if isinstance(ann_source, dict):
        path, sha = ann_source.get("checkpoint"), ann_source.get("sha256")
        parts = [str(path) if path else "", f"sha256 {str(sha)[:12]}" if sha else ""]
        text = ", ".join(p for p in parts if p)
        return f"the source ANN ({text})" if text else "the source ANN"
    return "the source ANN given"


class _SNNValueANNGradient(torch.autograd.Function):
    """Forward: the SNN's logits [B, K] (computed without a graph); backward: the incoming
    gradient dL/dl goes unchanged to the ANN's logits, i.e. through the ANN's Jacobian."""

    @staticmethod
    def forward(ctx, snn_logits: torch.Tensor, ann_logits: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.ann_dtype = ann_logits.dtype
        return snn_logits.clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return None, g.to(ctx.ann_dtype)


class SourceANN(GradientEstimator):
    """BPDA through the source ANN (module docstring). ``SourceANN()`` parsed from the spec
    ``source-ann`` has no ANN yet; the evaluation binds the model's (:meth:`bound`)."""

    name = "source-ann"
    description = ("BPDA for converted/hybrid SNNs: forward through the SNN, input gradient through its source "
                   "ANN (needs a checkpoint with an ann_source)")

    def __init__(self, ann: Optional[nn.Module] = None) -> None:
        if ann is not None and not isinstance(ann, nn.Module):
            raise ConfigError(f"source-ann: the source ANN must be a torch nn.Module, got {type(ann).__name__}")
        self.ann = ann
        super().__init__()  # no parameters: the ANN is the model's, not a setting of the attack

    def label(self) -> str:
        return "SourceANN"

    def spec(self) -> str:
        return self.name

    def bound(self, ann: Optional[nn.Module]) -> "SourceANN":
        """This estimator with ``ann`` as its source (itself when it already has one)."""
        return self if self.ann is not None or ann is None else SourceANN(ann)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """While active, ``model(x)`` with a graph to ``x`` returns the SNN's logits whose
        backward runs through the ANN; without one it is the SNN's plain forward.
        ``model.forward_encoded`` refuses a graph (the ANN reads pixels, not spike tensors).
        The model's methods and the ANN's training flags are restored on exit, also after an
        exception."""
        ann = self.ann
        if ann is None:
            raise ConfigError(NO_SOURCE)
        first = next(chain(model.parameters(), model.buffers()), None)
        if first is not None:
            ann.to(first.device)
        own = vars(model)
        saved = {k: own[k] for k in ("forward", "forward_encoded") if k in own}
        snn_forward = model.forward  # the method in force (bound), before it is replaced below
        plain_encoded = getattr(model, "forward_encoded", None)
        ann_flags = [(m, m.training) for m in ann.modules()]

        def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if not (torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad):
                return snn_forward(x, *args, **kwargs)  # scoring: the SNN alone, no ANN pass
            with torch.no_grad():
                out_snn = snn_forward(x, *args, **kwargs)
            out_ann = ann(x)
            if out_ann.shape != out_snn.shape:
                raise ConfigError(f"estimator source-ann: the source ANN gives logits {list(out_ann.shape)} where "
                                  f"the SNN gives {list(out_snn.shape)}; the ANN must be the one it was converted "
                                  "from")
            return _SNNValueANNGradient.apply(out_snn, out_ann)

        def forward_encoded(s: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if torch.is_grad_enabled() and isinstance(s, torch.Tensor) and s.requires_grad:
                raise ConfigError(NO_SPIKES)
            assert plain_encoded is not None
            return plain_encoded(s, *args, **kwargs)

        try:
            ann.eval()
            model.forward = forward  # type: ignore[method-assign]
            if plain_encoded is not None:
                model.forward_encoded = forward_encoded  # type: ignore[method-assign]
            yield model
        finally:
            for key in ("forward", "forward_encoded"):
                if key in saved:
                    setattr(model, key, saved[key])
                elif key in vars(model):
                    delattr(model, key)
            for m, training in ann_flags:
                m.training = training
