"""Per-operation gradient sparsity (seed 000, figures 3 and 5).

For every leaf operation of a model (conv, BN, spiking neuron or ReLU, pools, residual
join, linear), in the order the forward pass executes them, :func:`op_gradient_stats`
measures on a dataset

- the fraction of *exactly* zero entries of the gradient w.r.t. the op's input(s) and
  w.r.t. its output, and the L2 norms of both, per sample, then mean and standard error
  over samples;
- for ops with a weight, the weight-gradient density: the fraction of non-zero entries of
  d loss / d weight (per batch, averaged over batches; it depends on the batch size);
- the same zero fraction and norm for the gradient w.r.t. the input pixels.

"Gradient w.r.t. an op's input" is the gradient that flows back *through this op* (the
op's own vector-Jacobian product, as a module backward hook sees it), not the total
gradient of the input tensor: at a residual fork the conv branch and the shortcut are
measured separately. For a join with two inputs the entries of both input gradients are
pooled. Ops wrapped in :class:`~snnrobust.spiking.layers.SeqToBatch` are hooked on the
inner module, whose tensors are [T*B, ...]; per-sample values are taken over all T steps.

Two sources of the loss (``source``):

- ``"attack"``: the cross-entropy of the first step of an FGSM attack, model in eval mode,
  BPTT through the model's own surrogate (or an attacker's ``estimator``);
- ``"train"``: the training loss, model in train mode (BatchNorm uses batch statistics;
  its running statistics are restored afterwards).

In both cases the loss is the cross-entropy *summed* over the batch, so that in eval mode
each sample's gradients are exactly that sample's own (a mean would scale norms by
1/batch size; zero fractions and densities do not depend on the scale).

Hooks are tensor hooks installed by forward (pre-)hooks inside a context manager; all
of them are removed afterwards, and parameter ``.grad`` fields are never touched
(gradients are taken with :func:`torch.autograd.grad`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..spiking.functional import reset_states
from ..spiking.layers import Add, Connect, SeqToBatch
from ..spiking.neurons import SpikingNeuron
from .stats import fmt, from_json_float, json_float, mean_se

# Leaf operations that are measured: (module types, kind). First match wins; extend the
# list to measure new layer types. Other leaf modules (dropout, identity, encoders,
# normalization of the input) are not operations of the analysis.
OP_KINDS: list[tuple[tuple[type, ...], str]] = [
    ((nn.modules.conv._ConvNd,), "conv"),
    ((nn.modules.batchnorm._BatchNorm,), "bn"),
    ((SpikingNeuron,), "neuron"),
    ((nn.ReLU,), "relu"),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
      nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), "maxpool"),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
      nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), "avgpool"),
    ((Connect, Add), "residual"),
    ((nn.Linear,), "linear"),
]

# Ops that follow the multi-step convention [T, B, ...] even outside a SpikingClassifier.
_MULTISTEP = (SpikingNeuron, Connect, Add)

SOURCES = ("attack", "train")


def op_kind(module: nn.Module) -> Optional[str]:
    """The analysis kind of ``module`` ("conv", "bn", "neuron", ...) or None."""
    for types, kind in OP_KINDS:
        if isinstance(module, types):
            return kind
    return None


# -- report --------------------------------------------------------------------------------
@dataclass
class OpRow:
    """Statistics of one operation. Zero fractions are in [0, 1]; norms are L2 norms of a
    sample's gradient (all T steps together); ``*_se`` are standard errors over samples.
    ``weight_density`` is None for ops without a weight; NaN means "not measured" (e.g. no
    gradient flowed to that tensor)."""

    index: int
    name: str
    kind: str
    in_zero_frac: float
    in_zero_frac_se: float
    out_zero_frac: float
    out_zero_frac_se: float
    in_norm: float
    in_norm_se: float
    out_norm: float
    out_norm_se: float
    weight_density: Optional[float]
    n: int
    in_numel: int
    out_numel: int

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = json_float(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OpRow":
        kw = {}
        for f in fields(cls):
            v = d.get(f.name)
            if f.name == "weight_density":
                kw[f.name] = None if v is None and not d.get("has_weight") else from_json_float(v)
            elif f.name in ("index", "n", "in_numel", "out_numel"):
                kw[f.name] = int(v or 0)
            elif f.name in ("name", "kind"):
                kw[f.name] = str(v)
            else:
                kw[f.name] = from_json_float(v)
        return cls(**kw)


@dataclass
class SparsityReport:
    """Per-op gradient statistics of one model on one dataset, for one loss source."""

    source: str
    rows: list[OpRow]
    input_zero_frac: float
    input_zero_frac_se: float
    input_norm: float
    input_norm_se: float
    n_samples: int
    batch_size: int
    estimator: str = "bptt (model's surrogate)"
    model: Optional[dict] = None
    extra: dict = field(default_factory=dict)

    SCHEMA = "snnrobust.sparsity/1"

    def row(self, name: str) -> OpRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            d = r.to_dict()
            d["has_weight"] = r.weight_density is not None
            rows.append(d)
        return {
            "schema": self.SCHEMA,
            "source": self.source,
            "estimator": self.estimator,
            "n_samples": self.n_samples,
            "batch_size": self.batch_size,
            "input": {"zero_frac": json_float(self.input_zero_frac),
                      "zero_frac_se": json_float(self.input_zero_frac_se),
                      "norm": json_float(self.input_norm), "norm_se": json_float(self.input_norm_se)},
            "ops": rows,
            "model": self.model,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SparsityReport":
        if d.get("schema") != cls.SCHEMA:
            raise ConfigError(f"not a sparsity report (schema {d.get('schema')!r}, expected {cls.SCHEMA!r})")
        inp = d["input"]
        return cls(
            source=d["source"], rows=[OpRow.from_dict(r) for r in d["ops"]],
            input_zero_frac=from_json_float(inp["zero_frac"]), input_zero_frac_se=from_json_float(inp["zero_frac_se"]),
            input_norm=from_json_float(inp["norm"]), input_norm_se=from_json_float(inp["norm_se"]),
            n_samples=int(d["n_samples"]), batch_size=int(d["batch_size"]), estimator=d.get("estimator", ""),
            model=d.get("model"), extra=d.get("extra") or {},
        )

    def table(self) -> str:
        """A readable fixed-width table: one line per op in network order."""
        mode = "FGSM step, eval mode" if self.source == "attack" else "training loss, train mode"
        head = (f"gradient sparsity, source={self.source} ({mode}), "
                f"estimator={self.estimator}, {self.n_samples} samples; mean ± SE over samples")
        lines = [head,
                 f"input pixels: zero fraction {fmt(self.input_zero_frac)} ± {fmt(self.input_zero_frac_se)}, "
                 f"L2 norm {fmt(self.input_norm, '.3g')} ± {fmt(self.input_norm_se, '.2g')}"]
        w = max([len(r.name) for r in self.rows] + [2])
        lines.append(f"{'#':>3}  {'op':<{w}}  {'kind':<8}  {'in-zero':>15}  {'out-zero':>15}  "
                     f"{'|grad in|':>19}  {'|grad out|':>19}  {'w-density':>9}")
        for r in self.rows:
            wd = "" if r.weight_density is None else fmt(r.weight_density)
            lines.append(
                f"{r.index:>3}  {r.name:<{w}}  {r.kind:<8}  "
                f"{fmt(r.in_zero_frac):>6} ± {fmt(r.in_zero_frac_se):<6}  "
                f"{fmt(r.out_zero_frac):>6} ± {fmt(r.out_zero_frac_se):<6}  "
                f"{fmt(r.in_norm, '.3g'):>9} ± {fmt(r.in_norm_se, '.2g'):<7}  "
                f"{fmt(r.out_norm, '.3g'):>9} ± {fmt(r.out_norm_se, '.2g'):<7}  {wd:>9}")
        return "\n".join(lines)


# -- hooks ---------------------------------------------------------------------------------
@dataclass
class _Op:
    name: str
    kind: str
    module: nn.Module
    wrapped: bool  # inner module of a SeqToBatch: tensors are [T*B, ...]
    multistep: bool  # tensors are [T, B, ...] when not wrapped


@dataclass
class _Slot:
    """One call of one op (an op called twice in a forward pass gets two slots)."""

    op: _Op
    call: int
    in_zero: list = field(default_factory=list)
    in_norm: list = field(default_factory=list)
    out_zero: list = field(default_factory=list)
    out_norm: list = field(default_factory=list)
    weight_density: list = field(default_factory=list)
    in_numel: int = 0
    out_numel: int = 0

    @property
    def name(self) -> str:
        return self.op.name if self.call == 0 else f"{self.op.name}#{self.call + 1}"


def _discover(model: nn.Module) -> list[_Op]:
    from ..models.classifier import SpikingClassifier

    seq_model = isinstance(model, SpikingClassifier)
    wrapper_name = {id(m.module): name for name, m in model.named_modules() if isinstance(m, SeqToBatch)}
    ops = []
    for name, m in model.named_modules():
        kind = op_kind(m)
        if kind is None:
            continue
        wrapped = id(m) in wrapper_name
        ops.append(_Op(wrapper_name.get(id(m), name) or kind, kind, m, wrapped,
                       seq_model or isinstance(m, _MULTISTEP)))
    return ops


def _layout(t: torch.Tensor, B: int, op: _Op) -> Optional[str]:
    """How the batch sits in ``t``: "merged" [T*B, ...], "seq" [T, B, ...] or "batch" [B, ...]."""
    if t.dim() == 0:
        return None
    if op.wrapped and t.shape[0] % B == 0:
        return "merged"
    if op.multistep and t.dim() >= 2 and t.shape[1] == B:
        return "seq"
    if t.shape[0] == B:
        return "batch"
    if t.dim() >= 2 and t.shape[1] == B:
        return "seq"
    if t.shape[0] % B == 0:
        return "merged"
    return None


def _per_sample(g: torch.Tensor, B: int, layout: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(zero count [B], squared norm [B], entries per sample) of a gradient tensor."""
    if layout == "batch":
        v = g.reshape(1, B, -1)
    elif layout == "seq":
        v = g.reshape(g.shape[0], B, -1)
    else:  # merged [T*B, ...], time-major as SeqToBatch flattens it
        v = g.reshape(g.shape[0] // B, B, -1)
    zeros = (v == 0).sum(dim=(0, 2)).double()
    sq = v.double().pow(2).sum(dim=(0, 2))
    return zeros, sq, v.shape[0] * v.shape[2]


class _Acc:
    """Per-sample accumulator of one gradient side of one slot within a batch."""

    def __init__(self, B: int) -> None:
        self.zeros = torch.zeros(B, dtype=torch.float64)
        self.sq = torch.zeros(B, dtype=torch.float64)
        self.numel = 0

    def add(self, g: torch.Tensor, layout: str) -> None:
        z, s, n = _per_sample(g.detach(), self.zeros.shape[0], layout)
        self.zeros += z.cpu()
        self.sq += s.cpu()
        self.numel += n


class GradientRecorder:
    """Context manager that measures the gradients flowing through every op of ``model``.

    Inside ``with GradientRecorder(model) as rec:`` call ``rec.begin_batch(B)`` before a
    forward pass and ``rec.end_batch()`` after the backward pass. On exit every hook is
    removed."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.ops = _discover(model)
        self.slots: dict[tuple[int, int], _Slot] = {}
        self.order: list[tuple[int, int]] = []
        self._handles: list[Any] = []
        self._B = 0
        self._calls: dict[int, int] = defaultdict(int)
        self._pending_in: dict[tuple[int, int], _Acc] = {}
        self._pending_out: dict[tuple[int, int], _Acc] = {}

    def __enter__(self) -> "GradientRecorder":
        try:
            for op in self.ops:
                self._handles.append(op.module.register_forward_pre_hook(self._pre_hook(op)))
                self._handles.append(op.module.register_forward_hook(self._post_hook(op)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # per batch
    def begin_batch(self, B: int) -> None:
        self._B = B
        self._calls = defaultdict(int)
        self._pending_in, self._pending_out = {}, {}

    def end_batch(self) -> None:
        for key, slot in self.slots.items():
            for acc, zs, ns, attr in ((self._pending_in.get(key), slot.in_zero, slot.in_norm, "in_numel"),
                                      (self._pending_out.get(key), slot.out_zero, slot.out_norm, "out_numel")):
                if acc is None or acc.numel == 0:
                    continue
                zs.extend((acc.zeros / acc.numel).tolist())
                ns.extend(acc.sq.sqrt().tolist())
                setattr(slot, attr, acc.numel)
        self._pending_in, self._pending_out = {}, {}

    def weights(self) -> list[tuple[_Slot, torch.Tensor]]:
        """(first slot, weight) of every called op that has a trainable weight."""
        out, seen = [], set()
        for key in self.order:
            slot = self.slots[key]
            w = getattr(slot.op.module, "weight", None)
            if isinstance(w, torch.Tensor) and w.requires_grad and id(w) not in seen:
                seen.add(id(w))
                out.append((slot, w))
        return out

    # hooks
    def _key(self, op: _Op) -> tuple[int, int]:
        return id(op.module), self._calls[id(op.module)] - 1

    def _grad_hook(self, pending: dict, key, layout: str) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor) -> None:
            acc = pending.get(key)
            if acc is None:
                acc = pending[key] = _Acc(self._B)
            acc.add(g, layout)

        return hook

    def _pre_hook(self, op: _Op):
        def hook(module: nn.Module, args: tuple):
            if self._B == 0:  # forward outside a measured batch
                return None
            self._calls[id(module)] += 1
            key = self._key(op)
            if key not in self.slots:
                self.slots[key] = _Slot(op, key[1])
                self.order.append(key)
            if not torch.is_grad_enabled():
                return None
            new_args, changed = [], False
            for a in args:
                if isinstance(a, torch.Tensor) and a.requires_grad:
                    layout = _layout(a, self._B, op)
                    if layout is not None:
                        # A private view of the input: its gradient is exactly the part
                        # that flows back through this op (not through other consumers).
                        a = a.view_as(a)
                        a.register_hook(self._grad_hook(self._pending_in, key, layout))
                        changed = True
                new_args.append(a)
            return tuple(new_args) if changed else None

        return hook

    def _post_hook(self, op: _Op):
        def hook(module: nn.Module, args: tuple, output):
            if self._B == 0 or not torch.is_grad_enabled():
                return None
            key = self._key(op)
            outs = output if isinstance(output, (tuple, list)) else (output,)
            for o in outs:
                if isinstance(o, torch.Tensor) and o.requires_grad:
                    layout = _layout(o, self._B, op)
                    if layout is not None:
                        o.register_hook(self._grad_hook(self._pending_out, key, layout))
            return None

        return hook

    def rows(self) -> list[OpRow]:
        rows = []
        for i, key in enumerate(self.order):
            s = self.slots[key]
            izf, izs = mean_se(s.in_zero)
            ozf, ozs = mean_se(s.out_zero)
            inm, ins = mean_se(s.in_norm)
            onm, ons = mean_se(s.out_norm)
            has_w = isinstance(getattr(s.op.module, "weight", None), torch.Tensor)
            wd = (mean_se(s.weight_density)[0] if s.weight_density else math.nan) if has_w else None
            rows.append(OpRow(i, s.name, s.op.kind, izf, izs, ozf, ozs, inm, ins, onm, ons, wd,
                              len(s.in_zero), s.in_numel, s.out_numel))
        return rows


# -- the measurement ---------------------------------------------------------------------
def _check_data(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ConfigError("images must be a tensor [N, C, H, W] of pixels in [0, 1]")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ConfigError(f"labels must be a tensor [N] matching images ({images.shape[0]} samples)")
    if images.shape[0] == 0:
        raise ConfigError("no samples given: pass at least one image")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _model_description(model: nn.Module) -> Optional[dict]:
    cfg = getattr(model, "config", None)
    to_dict = getattr(cfg, "to_dict", None)
    return to_dict() if callable(to_dict) else None


def _estimator_context(model: nn.Module, estimator):
    """(context manager, label) applying an attacker's gradient estimator; None = the
    model's own surrogate (exact BPTT)."""
    import contextlib

    if estimator is None:
        return contextlib.nullcontext(), "bptt (model's surrogate)"
    from ..estimators import get_estimator

    est = get_estimator(estimator)
    est.reset()
    return est.applied(model), est.label()


def op_gradient_stats(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, source: str = "attack",
                      batch_size: int = 64, estimator=None) -> SparsityReport:
    """Measure per-operation gradient sparsity of ``model`` on ``images`` [N, C, H, W]
    (pixels in [0, 1]) with integer ``labels`` [N].

    ``source="attack"``: gradient of the CE loss at the first FGSM step (eval mode;
    ``estimator`` optionally selects an attacker's gradient estimator, e.g. "bptt:triangle:0.5",
    via :func:`snnrobust.estimators.get_estimator`). ``source="train"``: gradient of
    the training loss in train mode (BatchNorm running statistics restored afterwards).
    The model's mode, buffers and parameter ``.grad`` fields are left as they were."""
    if source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "train" and estimator is not None:
        raise ConfigError("an estimator applies to source='attack' only; training uses the model's own surrogate")
    _check_data(images, labels, batch_size)
    device = _model_device(model)
    was_training = model.training
    saved_buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    est_ctx, est_label = _estimator_context(model, estimator)
    pix_zero: list[float] = []
    pix_norm: list[float] = []
    try:
        model.train(source == "train")
        with est_ctx, GradientRecorder(model) as rec:
            for start in range(0, images.shape[0], batch_size):
                x = images[start:start + batch_size].to(device).detach().float().requires_grad_(True)
                y = labels[start:start + batch_size].to(device).long()
                B = x.shape[0]
                rec.begin_batch(B)
                reset_states(model)
                with torch.enable_grad():
                    logits = model(x)
                    loss = F.cross_entropy(logits, y, reduction="sum")
                    weights = rec.weights()
                    if loss.requires_grad:
                        grads = torch.autograd.grad(loss, [x] + [w for _, w in weights], allow_unused=True)
                    else:
                        grads = [None] * (1 + len(weights))
                rec.end_batch()
                gx = grads[0]
                if gx is None:  # no gradient path to the pixels: the attacker sees zeros
                    gx = torch.zeros_like(x)
                z, sq, n = _per_sample(gx.detach(), B, "batch")
                pix_zero.extend((z / n).tolist())
                pix_norm.extend(sq.sqrt().tolist())
                for (slot, _), gw in zip(weights, grads[1:]):
                    slot.weight_density.append(0.0 if gw is None else float((gw != 0).double().mean()))
                del logits, loss, grads
            rows = rec.rows()
    finally:
        reset_states(model)  # drop membrane states that still reference the graph
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in saved_buffers:
                    b.copy_(saved_buffers[n])
        model.train(was_training)
    izf, izs = mean_se(pix_zero)
    inm, ins = mean_se(pix_norm)
    return SparsityReport(source=source, rows=rows, input_zero_frac=izf, input_zero_frac_se=izs,
                          input_norm=inm, input_norm_se=ins, n_samples=int(images.shape[0]),
                          batch_size=batch_size, estimator=est_label, model=_model_description(model),
                          extra={"loss": "cross-entropy summed over the batch"})
