"""Typed views of the ``study`` dict a report is built from.

A study dict is assembled by the study runner from pieces written by different parts of
snnrobust: evaluation JSON (``snnrobust.evaluation/1``), ``SparsityReport.to_dict()``,
``VulnerabilityReport.to_dict()``, model entries with training metrics. :func:`load` reads
every stored result exactly once through its own typed reader
(:meth:`EvaluationResult.from_dict`, :meth:`SparsityReport.from_dict`,
:meth:`VulnerabilityResult.from_dict`), so the report works on attributes and the JSON schema
is known in one place. A result its reader rejects (a half-written or foreign file) is kept
as :class:`Unreadable`: the report lists it, and no verdict is given from a model whose
non-weak evaluation could not be read. Study-level parts written by the runner itself
(model entries, dataset, claims) are plain mappings and are read defensively: what is
missing renders as "not measured".

Accuracies and zero fractions are fractions in [0, 1]; they are shown in percent.

Replicates: a study trains each variant R times (training seeds s, s+1, ...); its model
entries, evaluations and sparsity entries carry ``replicate`` (0..R-1) and ``seed``. Entries
without them (studies written before replicates existed) are replicate 0. Functions that
return one number per model (:func:`clean_accuracy`, :func:`model_entry`) give replicate
0's; :func:`per_seed` and :class:`SeedValues` give every replicate's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..analysis.results import VulnerabilityResult, finite_float
from ..analysis.sparsity import OpRow, SparsityReport
from ..evaluation.metrics import Z95  # rates: Wilson; means: mean ± Z95·SE
from ..evaluation.metrics import Rate
from ..evaluation.metrics import wilson_interval as wilson
from ..evaluation.results import EvaluationResult
from ..evaluation.threat import format_eps  # noqa: F401  (re-exported: sections use R.format_eps, "?" when unknown)
from ..evaluation.threat import ThreatModel
from ..errors import SnnRobustError


# -- scalars -------------------------------------------------------------------------------
#: A finite float, or None (bools, strings, NaN, inf and None are not numbers here).
num = finite_float


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


def estimate(r: Optional[Rate]) -> Optional[Estimate]:
    """A typed :class:`Rate` as an Estimate with its Wilson interval (None when n = 0)."""
    if r is None or not r.n:
        return None
    lo, hi = r.ci
    return Estimate(r.value, lo, hi, "rate", r.k, r.n)


def rate(d: Any) -> Optional[Estimate]:
    """A rate mapping ``{k, n, value, ci: [lo, hi]}`` (or a bare fraction) of a study-level
    part (a model entry's clean accuracy, a table cell) as an Estimate. Stored results are
    typed: use :func:`estimate` on their :class:`Rate`."""
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


# -- typed study ---------------------------------------------------------------------------
#: what a typed reader raises on a malformed result (ConfigError for a wrong schema)
_READ_ERRORS = (SnnRobustError, KeyError, TypeError, ValueError, AttributeError, IndexError)


@dataclass
class Evaluation:
    """One evaluation of a study: ``model`` label, ``protocol`` name, the entry's ``weak``
    flag (None when the entry has none) and the typed ``result``."""

    model: str
    protocol: str
    weak: Optional[bool]
    result: EvaluationResult
    replicate: int = 0
    seed: Optional[int] = None


@dataclass
class SparsityEntry:
    model: str
    source: str                 # "attack" | "train": which loss the gradient is of
    result: SparsityReport
    replicate: int = 0
    seed: Optional[int] = None


@dataclass
class VulnerabilityEntry:
    model: str
    result: VulnerabilityResult


@dataclass
class Unreadable:
    """A stored result its typed reader rejected: ``kind`` ("evaluation", "sparsity",
    "vulnerability"), the entry's model and protocol/source (``what``), and why."""

    kind: str
    model: str
    what: str
    reason: str
    weak: Optional[bool] = None

    def line(self) -> str:
        return f"{self.kind} {self.model or '?'} / {self.what}: {self.reason}"


@dataclass
class Study:
    """A study dict with every stored result read once into its typed object.

    ``raw`` is the study dict itself, for the parts the runner writes (name, dataset,
    models, claims)."""

    raw: dict
    evaluations: list[Evaluation] = field(default_factory=list)
    sparsity: list[SparsityEntry] = field(default_factory=list)
    vulnerability: list[VulnerabilityEntry] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        """A study-level field (``study``, ``dataset``, ``models``, ``claims`` ...)."""
        return self.raw.get(key, default)


StudyLike = Union[Study, dict]


def _why(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    return f"missing key {msg}" if isinstance(e, KeyError) else msg


def evaluation_result(d: Union[EvaluationResult, dict]) -> EvaluationResult:
    """An evaluation result as its typed object (read with :meth:`EvaluationResult.from_dict`
    when given the stored JSON)."""
    return d if isinstance(d, EvaluationResult) else EvaluationResult.from_dict(d)


def load(study: StudyLike) -> Study:
    """Read every stored result of ``study`` once (a :class:`Study` is returned as it is)."""
    if isinstance(study, Study):
        return study
    out = Study(study if isinstance(study, dict) else {})
    for i, e in enumerate(as_list(out.raw.get("evaluations"))):
        e = as_dict(e)
        model, weak = text(e.get("model")), e.get("weak") if isinstance(e.get("weak"), bool) else None
        try:
            if not isinstance(e.get("result"), dict):
                raise TypeError(f"entry {i} has no result mapping")
            res = EvaluationResult.from_dict(e["result"])
        except _READ_ERRORS as err:
            out.unreadable.append(Unreadable("evaluation", model, text(e.get("protocol"), "unnamed protocol"),
                                             _why(err), weak))
            continue
        protocol = text(e.get("protocol")) or text(res.suite) or "unnamed protocol"
        out.evaluations.append(Evaluation(model, protocol, weak, res, integer(e.get("replicate")) or 0,
                                          integer(e.get("seed"))))
    for i, e in enumerate(as_list(out.raw.get("sparsity"))):
        e = as_dict(e)
        model = text(e.get("model"))
        try:
            if not isinstance(e.get("result"), dict):
                raise TypeError(f"entry {i} has no result mapping")
            rep = SparsityReport.from_dict(e["result"])
        except _READ_ERRORS as err:
            out.unreadable.append(Unreadable("sparsity", model, text(e.get("source"), "?"), _why(err)))
            continue
        out.sparsity.append(SparsityEntry(model, text(e.get("source")) or text(rep.source) or "attack", rep,
                                          integer(e.get("replicate")) or 0, integer(e.get("seed"))))
    for i, e in enumerate(as_list(out.raw.get("vulnerability"))):
        e = as_dict(e)
        model = text(e.get("model"))
        try:
            vul = VulnerabilityResult.from_dict(e.get("result"))
        except _READ_ERRORS as err:
            out.unreadable.append(Unreadable("vulnerability", model, "ρ", _why(err)))
            continue
        out.vulnerability.append(VulnerabilityEntry(model, vul))
    return out


# -- study structure -----------------------------------------------------------------------
def models(study: StudyLike) -> list[dict]:
    """Model entries that have a label, in study order."""
    return [m for m in as_list(study.get("models")) if isinstance(m, dict) and text(m.get("label"))]


def model_labels(study: StudyLike) -> list[str]:
    """Every model label, from the model list first, then any that only appear in results
    (unreadable ones too: their model still gets a verdict, "not established")."""
    st = load(study)
    labels = list(dict.fromkeys(m["label"] for m in models(st)))
    for lab in ([e.model for e in st.evaluations] + [e.model for e in st.sparsity]
                + [e.model for e in st.vulnerability] + [u.model for u in st.unreadable]):
        if lab and lab not in labels:
            labels.append(lab)
    return labels


def model_entry(study: StudyLike, label: str, replicate: int = 0) -> dict:
    """The model entry of ``label`` (its replicate ``replicate``; entries without one are replicate 0)."""
    for m in models(study):
        if m["label"] == label and (integer(m.get("replicate")) or 0) == replicate:
            return m
    return {}


def replicate_count(study: StudyLike, label: Optional[str] = None) -> int:
    """How many replicates the study has of ``label`` (of any model when None): distinct
    replicate numbers among its model entries and results, at least 1."""
    st = load(study)
    reps = {integer(m.get("replicate")) or 0 for m in models(st) if label is None or m["label"] == label}
    reps |= {e.replicate for e in st.evaluations if label is None or e.model == label}
    return max(1, len(reps))


def tag(study: StudyLike, model: str, replicate: int, seed: Optional[int]) -> str:
    """`` (replicate r, seed s)`` after a model's name where the study has several replicates of it, else ""."""
    if replicate_count(study, model) < 2:
        return ""
    return f" (replicate {replicate}" + (f", seed {seed})" if seed is not None else ")")


def evaluations(study: StudyLike, model: Optional[str] = None, protocol: Optional[str] = None) -> list[Evaluation]:
    """The readable evaluations, optionally of one model and/or protocol, in study order."""
    return [e for e in load(study).evaluations
            if (model is None or e.model == model) and (protocol is None or e.protocol == protocol)]


def protocol_is_weak(study: StudyLike, protocol: str) -> Optional[bool]:
    """Whether ``protocol`` is a weak (seed-paper) protocol: the ``weak`` flag its evaluations
    carry; lacking one, names starting with "seed-" are weak and "reliable"/"standard" are not;
    None when unknown."""
    for e in evaluations(study, protocol=protocol):
        if e.weak is not None:
            return e.weak
    if protocol.startswith("seed-"):
        return True
    if protocol in ("reliable", "standard"):
        return False
    return None


def evaluation_is_weak(study: StudyLike, e: "Evaluation | Unreadable") -> bool:
    if e.weak is not None:
        return e.weak
    return bool(protocol_is_weak(study, e.protocol if isinstance(e, Evaluation) else e.what))


def unreadable(study: StudyLike, kind: Optional[str] = None, model: Optional[str] = None) -> list[Unreadable]:
    return [u for u in load(study).unreadable
            if (kind is None or u.kind == kind) and (model is None or u.model == model)]


@dataclass(frozen=True)
class SeedValues:
    """One number per replicate of a model: ``values[i]`` = (replicate, training seed, estimate),
    in replicate order. :meth:`summary` is their mean with the across-seed t interval."""

    values: tuple

    @property
    def n(self) -> int:
        return len(self.values)

    def by_replicate(self) -> dict[int, Estimate]:
        return {r: est for r, _, est in self.values}

    def summary(self) -> Optional[Estimate]:
        """Mean over seeds; with >= 2 seeds [lo, hi] = mean ± t_{0.975, n-1} · sd / sqrt(n) (``se`` =
        sd / sqrt(n), ``n`` = seeds, ``kind`` "rate" when every seed's is); one seed: its own estimate."""
        from ..analysis.paired import t_quantile

        if not self.values:
            return None
        if len(self.values) == 1:
            return self.values[0][2]
        xs = [est.value for _, _, est in self.values]
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
        se = sd / math.sqrt(len(xs))
        half = t_quantile(0.975, len(xs) - 1) * se
        kind = "rate" if all(e.kind == "rate" for _, _, e in self.values) else "mean"
        return Estimate(m, m - half, m + half, kind, n=len(xs), se=se)

    def text(self, missing: str = "not measured") -> str:
        """``96.0% [95.1, 96.9] across 3 seeds (per seed: 95.7, 96.0, 96.3)`` for rates; one seed:
        its estimate's own text (a rate with its Wilson interval)."""
        est = self.summary()
        if est is None:
            return missing
        if self.n == 1:
            return est.text()
        rate_like = all(e.kind == "rate" for _, _, e in self.values)
        f = (lambda v: f"{100 * v:.1f}") if rate_like else (lambda v: f"{v:.3g}")
        unit = "%" if rate_like else ""
        return (f"{f(est.value)}{unit} [{f(est.lo)}, {f(est.hi)}] across {self.n} seeds "
                f"(per seed: {', '.join(f(e.value) for _, _, e in self.values)})")


def per_seed_clean(study: StudyLike, label: str) -> SeedValues:
    """Clean accuracy of every replicate of ``label`` (from its model entries)."""
    out = []
    for m in models(study):
        if m["label"] == label:
            est = rate(m.get("clean_accuracy"))
            if est is not None:
                out.append((integer(m.get("replicate")) or 0, integer(m.get("seed")), est))
    if not out:
        est = clean_accuracy(study, label)
        if est is not None:
            out.append((0, None, est))
    return SeedValues(tuple(sorted(out, key=lambda t: t[0])))


def per_seed_robust(study: StudyLike, label: str, protocol: str) -> SeedValues:
    """Robust accuracy (per-sample worst case) of every replicate of ``label`` under ``protocol``."""
    out = []
    for e in evaluations(study, model=label, protocol=protocol):
        est, _ = robust_accuracy(e.result)
        if est is not None:
            out.append((e.replicate, e.seed, est))
    return SeedValues(tuple(sorted(out, key=lambda t: t[0])))


def per_seed_zero_fraction(study: StudyLike, label: str, source: str = "attack") -> SeedValues:
    """Pixel-level input-gradient zero fraction (:func:`input_zero_fraction`) of every replicate of
    ``label`` from its ``source`` sparsity measurement (any source when it has none)."""
    entries = sparsity_entries(study, model=label, source=source) or sparsity_entries(study, model=label)
    out, seen = [], set()
    for e in entries:
        est, _ = input_zero_fraction(e.result)
        if est is not None and e.replicate not in seen:
            seen.add(e.replicate)
            out.append((e.replicate, e.seed, est))
    return SeedValues(tuple(sorted(out, key=lambda t: t[0])))


def clean_correct(study: StudyLike, label: str) -> dict[int, list[bool]]:
    """Per replicate, whether each test image is classified correctly (the model entry's
    ``clean_correct``, "1"/"0" per image); replicates that did not record it are left out."""
    out = {}
    for m in models(study):
        s = m.get("clean_correct") if m["label"] == label else None
        if isinstance(s, str) and s and set(s) <= {"0", "1"}:
            out[integer(m.get("replicate")) or 0] = [c == "1" for c in s]
    return out


def robust_correct(result: Union[EvaluationResult, dict]) -> Optional[list[bool]]:
    """Per evaluated sample, whether it stayed correct under every attack (``per_sample`` is
    None there); None when the result has no per-sample record."""
    per = evaluation_result(result).worst_case.per_sample
    if not per:
        return None
    return [v is None for v in per]


def clean_accuracy(study: StudyLike, label: str) -> Optional[Estimate]:
    """Replicate 0's, from ``models[].clean_accuracy``; lacking it, from the first evaluation's clean rate."""
    est = rate(model_entry(study, label).get("clean_accuracy"))
    if est is not None:
        return est
    for e in evaluations(study, model=label):
        est = estimate(e.result.clean)
        if est is not None:
            return est
    return None


def robust_accuracy(result: Union[EvaluationResult, dict]) -> tuple[Optional[Estimate], str]:
    """(robust accuracy, where it comes from): the per-sample worst case over the attacks
    (every evaluation result records one); None when it counts no sample."""
    res = evaluation_result(result)
    wc = estimate(res.worst_case.robust_accuracy)
    if wc is None:
        return None, "no robust accuracy recorded"
    n_att = len(res.attacks)
    return wc, f"per-sample worst case over {n_att} attack(s)" if n_att else "per-sample worst case"


def incomplete_reasons(result: Union[EvaluationResult, dict]) -> list[str]:
    """Why an evaluation is incomplete (an attack crashed and left samples unattacked, so its
    robust accuracy is only an upper bound); [] when it is complete. A result written before
    ``complete`` / ``incomplete`` existed is incomplete when an attack record carries an
    ``error`` (:func:`snnrobust.evaluation.results.incomplete_from_dict`)."""
    return evaluation_result(result).incomplete_reasons()


# -- threat model --------------------------------------------------------------------------
def threat(result: Union[EvaluationResult, dict]) -> ThreatModel:
    """The evaluation's threat model (norm, eps, perturb, bn_mode; ``label()`` for tables)."""
    return evaluation_result(result).threat_model


def replication_flags(result: Union[EvaluationResult, dict]) -> list[str]:
    """Every option in force that replicates a seed paper's weak protocol rather than a
    valid input-level threat model (perturbation on spike tensors, BatchNorm in train mode
    while crafting, PGD that aborts on a small gradient norm)."""
    res = evaluation_result(result)
    t = res.threat_model
    flags = [f for f in res.replication if isinstance(f, str) and f]
    said = " ".join(flags).lower()
    if t.perturb == "spikes" and "spike" not in said:
        flags.append("perturbation added to the encoded SPIKE TENSOR, not to pixels")
    if t.bn_mode == "train" and "bn" not in said and "batchnorm" not in said:
        flags.append("attacks crafted with BatchNorm in TRAIN mode (batch statistics)")
    # the attack's settings (Attack.to_dict()) are a free-form mapping by design
    aborting = sorted({a.id for a in res.attacks if num(a.attack.get("abort_grad_norm")) is not None})
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
def sparsity_entries(study: StudyLike, model: Optional[str] = None,
                     source: Optional[str] = None) -> list[SparsityEntry]:
    return [e for e in load(study).sparsity
            if (model is None or e.model == model) and (source is None or e.source == source)]


def sparsity_ops(rep: SparsityReport) -> list[OpRow]:
    return [r for r in rep.rows if r.name]


def input_zero_fraction(rep: SparsityReport) -> tuple[Optional[Estimate], str]:
    """Pixel-level input-gradient sparsity of a sparsity result: the fraction of exactly-zero
    entries of d loss / d pixels, mean ± SE over samples. Lacking the pixel-level number, the
    mean over operations of each op's input-gradient zero fraction, with SE = sqrt(sum SE_i²)
    / n_ops (treating ops as independent). Returns (estimate, how)."""
    est = mean(rep.input_zero_frac, rep.input_zero_frac_se, rep.n_samples)
    if est is not None:
        return est, "pixel-level input-gradient zero fraction"
    vals, ses = [], []
    for r in sparsity_ops(rep):
        v = num(r.in_zero_frac)
        if v is not None:
            vals.append(v)
            ses.append(num(r.in_zero_frac_se))
    if not vals:
        return None, "no input-gradient zero fraction recorded"
    m = sum(vals) / len(vals)
    se = None if any(s is None for s in ses) else math.sqrt(sum(s * s for s in ses)) / len(vals)
    return mean(m, se, rep.n_samples), f"mean over {len(vals)} operations' input-gradient zero fraction"


# -- vulnerability -------------------------------------------------------------------------
def vulnerability_entries(study: StudyLike, model: Optional[str] = None) -> list[VulnerabilityEntry]:
    return [e for e in load(study).vulnerability if model is None or e.model == model]
