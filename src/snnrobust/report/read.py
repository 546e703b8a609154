"""Defensive readers for the ``study`` dict a report is built from.

A study dict is assembled by the study runner from pieces written by different parts of
snnrobust (evaluation JSON ``snnrobust.evaluation/1``, ``SparsityReport.to_dict()``,
``VulnerabilityReport.to_dict()``, training metrics). Any piece may be missing or partial
(an interrupted run, an older schema), so every reader here returns ``None`` / an empty
list instead of raising, and the report says "not measured" for what it cannot read.

Accuracies and zero fractions are fractions in [0, 1]; they are shown in percent.
"""

from __future__ import annotations

from ..attacks.metrics import Z95  # rates: Wilson; means: mean ± Z95·SE
from ..attacks.metrics import wilson_interval as wilson
from ..attacks.threat import format_eps  # noqa: F401  (re-exported: sections use R.format_eps, "?" when unknown)

import math
from dataclasses import dataclass
from typing import Any, Optional


# -- scalars -------------------------------------------------------------------------------
def num(x: Any) -> Optional[float]:
    """A finite float, or None (bools, strings, NaN, inf and None are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def integer(x: Any) -> Optional[int]:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x) and x == int(x):
        return int(x)
    return None


def text(x: Any, default: str = "") -> str:
    return x if isinstance(x, str) and x else default


def as_dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else []


@dataclass(frozen=True)
class Estimate:
    """A measured number with its 95 % interval.

    ``kind="rate"``: a fraction k/n in [0, 1] with its Wilson interval [lo, hi];
    ``kind="mean"``: a mean over samples with standard error ``se``; [lo, hi] = mean ± 1.96·SE.
    ``lo``/``hi`` are None when no uncertainty was recorded."""

    value: float
    lo: Optional[float] = None
    hi: Optional[float] = None
    kind: str = "rate"
    k: Optional[int] = None
    n: Optional[int] = None
    se: Optional[float] = None

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None

    def overlaps(self, other: "Estimate") -> bool:
        """Whether the two 95 % intervals share a point (True when either has none)."""
        if not (self.has_interval and other.has_interval):
            return True
        return self.lo <= other.hi and other.lo <= self.hi

    def text(self) -> str:
        """``97.3% [96.1, 98.1]`` for rates, ``0.912 ± 0.004 (SE)`` for means."""
        if self.kind == "rate":
            s = f"{100 * self.value:.1f}%"
            if self.has_interval:
                s += f" [{100 * self.lo:.1f}, {100 * self.hi:.1f}]"
            return s
        s = f"{self.value:.4g}"
        if self.se is not None:
            s += f" ± {self.se:.2g} (SE)"
        return s


def rate(d: Any) -> Optional[Estimate]:
    """A rate dict ``{k, n, value, ci: [lo, hi]}`` (or a bare fraction) as an Estimate."""
    if num(d) is not None:
        return Estimate(num(d))
    d = as_dict(d)
    k, n = integer(d.get("k")), integer(d.get("n"))
    value = num(d.get("value"))
    if value is None and k is not None and n:
        value = k / n
    if value is None:
        return None
    lo = hi = None
    ci = d.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and num(ci[0]) is not None and num(ci[1]) is not None:
        lo, hi = num(ci[0]), num(ci[1])
    elif num(d.get("ci_low")) is not None and num(d.get("ci_high")) is not None:
        lo, hi = num(d.get("ci_low")), num(d.get("ci_high"))
    elif k is not None and n and 0 <= k <= n:  # malformed k/n: leave the interval unknown
        lo, hi = wilson(k, n)
    return Estimate(value, lo, hi, "rate", k, n)


def mean(value: Any, se: Any, n: Any = None) -> Optional[Estimate]:
    """A mean with its standard error as an Estimate (interval mean ± 1.96·SE)."""
    v = num(value)
    if v is None:
        return None
    s = num(se)
    if s is None or s < 0:  # a negative standard error is not one: treat as unrecorded
        return Estimate(v, kind="mean", n=integer(n))
    return Estimate(v, v - Z95 * s, v + Z95 * s, "mean", n=integer(n), se=s)


def pct(e: Optional[Estimate], missing: str = "not measured") -> str:
    return missing if e is None else e.text()


# -- study structure -----------------------------------------------------------------------
def models(study: dict) -> list[dict]:
    """Model entries that have a label, in study order."""
    return [m for m in as_list(study.get("models")) if isinstance(m, dict) and text(m.get("label"))]


def model_labels(study: dict) -> list[str]:
    """Every model label, from the model list first, then any that only appear in results."""
    labels = [m["label"] for m in models(study)]
    for key in ("evaluations", "sparsity", "vulnerability"):
        for e in as_list(study.get(key)):
            lab = text(as_dict(e).get("model"))
            if lab and lab not in labels:
                labels.append(lab)
    return labels


def model_entry(study: dict, label: str) -> dict:
    for m in models(study):
        if m["label"] == label:
            return m
    return {}


def evaluations(study: dict, model: Optional[str] = None, protocol: Optional[str] = None) -> list[dict]:
    """Evaluation entries ``{model, protocol, weak, result}`` that have a dict result."""
    out = []
    for e in as_list(study.get("evaluations")):
        if not isinstance(e, dict) or not isinstance(e.get("result"), dict):
            continue
        if model is not None and e.get("model") != model:
            continue
        if protocol is not None and protocol_of(e) != protocol:
            continue
        out.append(e)
    return out


def protocol_of(e: dict) -> str:
    return text(e.get("protocol")) or text(as_dict(e.get("result")).get("suite")) or "unnamed protocol"


def protocol_is_weak(study: dict, protocol: str) -> Optional[bool]:
    """Whether ``protocol`` is a weak (seed-paper) protocol: the ``weak`` flag its evaluations
    carry; lacking one, names starting with "seed-" are weak and "reliable"/"standard" are not;
    None when unknown."""
    for e in evaluations(study, protocol=protocol):
        if isinstance(e.get("weak"), bool):
            return e["weak"]
    if protocol.startswith("seed-"):
        return True
    if protocol in ("reliable", "standard"):
        return False
    return None


def evaluation_is_weak(study: dict, e: dict) -> bool:
    if isinstance(e.get("weak"), bool):
        return e["weak"]
    return bool(protocol_is_weak(study, protocol_of(e)))


def clean_accuracy(study: dict, label: str) -> Optional[Estimate]:
    """From ``models[].clean_accuracy``; lacking it, from the first evaluation's clean rate."""
    est = rate(model_entry(study, label).get("clean_accuracy"))
    if est is not None:
        return est
    for e in evaluations(study, model=label):
        est = rate(e["result"].get("clean"))
        if est is not None:
            return est
    return None


def attack_rows(result: dict) -> list[dict]:
    return [a for a in as_list(result.get("attacks")) if isinstance(a, dict)]


def attack_id(a: dict) -> str:
    att = as_dict(a.get("attack"))
    return text(a.get("id")) or text(att.get("name")) or "attack"


def robust_accuracy(result: dict) -> tuple[Optional[Estimate], str]:
    """(robust accuracy, where it comes from): the per-sample worst case when recorded,
    else the minimum over the attacks' robust accuracies."""
    wc = rate(as_dict(result.get("worst_case")).get("robust_accuracy"))
    n_att = len(attack_rows(result))
    if wc is not None:
        return wc, f"per-sample worst case over {n_att} attack(s)" if n_att else "per-sample worst case"
    best: Optional[tuple[Estimate, str]] = None
    for a in attack_rows(result):
        est = rate(a.get("robust_accuracy"))
        if est is not None and (best is None or est.value < best[0].value):
            best = (est, attack_id(a))
    if best is None:
        return None, "no robust accuracy recorded"
    return best[0], f"minimum over attacks ({best[1]})"


def incomplete_reasons(result: dict) -> list[str]:
    """Why an evaluation is incomplete (an attack crashed and left samples unattacked, so its
    robust accuracy is only an upper bound); [] when it is complete. Reads ``complete`` /
    ``incomplete`` of the evaluation JSON; a result written before those keys existed is
    incomplete when an attack record carries an ``error``."""
    out = []
    for f in as_list(result.get("incomplete")):
        f = as_dict(f)
        why = text(f.get("reason")) or (f"attack {text(f.get('attack'), '?')} failed: "
                                        f"{text(f.get('error'), 'no error recorded')}")
        out.append(why)
    if not out:
        for a in attack_rows(result):
            err = as_dict(a.get("meta")).get("error")
            if err:
                out.append(f"attack {attack_id(a)} failed ({err}); it broke nothing it was meant to attack")
    if not out and result.get("complete") is False:
        out.append("the evaluation says it is incomplete without giving the reason")
    return out


def diagnostics(result: dict) -> list[dict]:
    """Diagnostic rows ``{name, status, summary, numbers}``; status upper-cased."""
    out = []
    for d in as_list(result.get("diagnostics")):
        if not isinstance(d, dict):
            continue
        out.append({"name": text(d.get("name"), "unnamed check"),
                    "status": text(d.get("status"), "SKIP").upper(),
                    "summary": text(d.get("summary")),
                    "numbers": as_dict(d.get("numbers"))})
    return out


# -- threat model --------------------------------------------------------------------------
def threat(result: dict) -> dict:
    """Threat model of an evaluation: norm, eps, perturb, bn_mode (defaults for missing
    keys are the library defaults) and a label."""
    t = as_dict(result.get("threat_model"))
    norm = text(t.get("norm"), "linf").lower()
    eps = num(t.get("eps"))
    perturb = text(t.get("perturb"), "pixels")
    bn_mode = text(t.get("bn_mode"), "eval")
    label = text(t.get("label"))
    if not label:
        label = f"{'Linf' if norm == 'linf' else 'L2'} eps={format_eps(eps)} on " \
                f"{'SPIKE TENSOR' if perturb == 'spikes' else 'pixels'}"
        if bn_mode == "train":
            label += ", BN in TRAIN mode while crafting"
    return {"norm": norm, "eps": eps, "perturb": perturb, "bn_mode": bn_mode, "label": label,
            "recorded": bool(t)}


def replication_flags(result: dict) -> list[str]:
    """Every option in force that replicates a seed paper's weak protocol rather than a
    valid input-level threat model (perturbation on spike tensors, BatchNorm in train mode
    while crafting, PGD that aborts on a small gradient norm)."""
    t = threat(result)
    flags = [f for f in as_list(result.get("replication")) if isinstance(f, str) and f]
    said = " ".join(flags).lower()
    if t["perturb"] == "spikes" and "spike" not in said:
        flags.append("perturbation added to the encoded SPIKE TENSOR, not to pixels")
    if t["bn_mode"] == "train" and "bn" not in said and "batchnorm" not in said:
        flags.append("attacks crafted with BatchNorm in TRAIN mode (batch statistics)")
    aborting = sorted({attack_id(a) for a in attack_rows(result)
                       if num(as_dict(a.get("attack")).get("abort_grad_norm")) is not None})
    if aborting and "abort" not in said:
        flags.append("attack aborts when the gradient norm is tiny (masking treated as an error): "
                     + ", ".join(aborting))
    return flags


def eps_units(norm: str, perturb: str) -> tuple[float, str]:
    """(scale, axis label) for plotting eps: L∞ budgets in /255 units."""
    where = "spike-tensor units" if perturb == "spikes" else "pixel units"
    if norm == "linf":
        return 255.0, f"ε (L∞, {where} /255)"
    return 1.0, f"ε (L2, {where})"


# -- sparsity ------------------------------------------------------------------------------
def sparsity_entries(study: dict, model: Optional[str] = None, source: Optional[str] = None) -> list[dict]:
    out = []
    for e in as_list(study.get("sparsity")):
        if not isinstance(e, dict) or not isinstance(e.get("result"), dict):
            continue
        if model is not None and e.get("model") != model:
            continue
        if source is not None and sparsity_source(e) != source:
            continue
        out.append(e)
    return out


def sparsity_source(e: dict) -> str:
    return text(e.get("source")) or text(as_dict(e.get("result")).get("source")) or "attack"


def sparsity_ops(result: dict) -> list[dict]:
    return [r for r in as_list(result.get("ops")) if isinstance(r, dict) and text(r.get("name"))]


def input_zero_fraction(result: dict) -> tuple[Optional[Estimate], str]:
    """Pixel-level input-gradient sparsity of a sparsity result: the fraction of exactly-zero
    entries of d loss / d pixels, mean ± SE over samples (``result["input"]``). Lacking the
    pixel-level number, the mean over operations of each op's input-gradient zero fraction,
    with SE = sqrt(sum SE_i²) / n_ops (treating ops as independent). Returns (estimate, how)."""
    inp = as_dict(result.get("input"))
    est = mean(inp.get("zero_frac"), inp.get("zero_frac_se"), result.get("n_samples"))
    if est is not None:
        return est, "pixel-level input-gradient zero fraction"
    vals, ses = [], []
    for r in sparsity_ops(result):
        v = num(r.get("in_zero_frac"))
        if v is not None:
            vals.append(v)
            ses.append(num(r.get("in_zero_frac_se")))
    if not vals:
        return None, "no input-gradient zero fraction recorded"
    m = sum(vals) / len(vals)
    se = None if any(s is None for s in ses) else math.sqrt(sum(s * s for s in ses)) / len(vals)
    return mean(m, se, result.get("n_samples")), f"mean over {len(vals)} operations' input-gradient zero fraction"


# -- vulnerability -------------------------------------------------------------------------
def vulnerability_entries(study: dict, model: Optional[str] = None) -> list[dict]:
    out = []
    for e in as_list(study.get("vulnerability")):
        if not isinstance(e, dict) or not isinstance(e.get("result"), dict):
            continue
        if model is not None and e.get("model") != model:
            continue
        out.append(e)
    return out


def vulnerability_summary(result: dict) -> dict:
    """The summary numbers of a ``VulnerabilityReport.to_dict()`` (``result["summary"]``, or
    the top level for a flat dict): rho_rand, rho_adv (with ``*_se``), ratio, l0, bound_model,
    frac_bound_holds, ... — only the keys present."""
    s = as_dict(result.get("summary")) or result
    return {k: v for k, v in s.items() if not isinstance(v, (list, dict)) or k == "adv_from"}


def vulnerability_per_sample(result: dict) -> tuple[list[float], list[float]]:
    """Per-sample (bound sqrt(2 L0), ratio adv/rand), only pairs where both are finite."""
    ps = as_dict(result.get("per_sample"))
    bounds, ratios = as_list(ps.get("bound")), as_list(ps.get("ratio"))
    if not bounds and as_list(ps.get("l0")):
        bounds = [math.sqrt(2 * v) if num(v) is not None and v >= 0 else None for v in as_list(ps.get("l0"))]
    out_b, out_r = [], []
    for b, r in zip(bounds, ratios):
        if num(b) is not None and num(r) is not None:
            out_b.append(float(b))
            out_r.append(float(r))
    return out_b, out_r
