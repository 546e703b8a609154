"""Verdicts generated from the numbers: one per model, one per seed-paper claim.

Model verdict (:func:`model_verdict`), per evaluation under a non-weak protocol
(``reliable``, ``standard``), with r = its robust accuracy (the per-sample worst case over
its attacks) and c = the model's clean accuracy:

0. the evaluation is incomplete (an attack crashed and left samples unattacked, see
   :func:`read.incomplete_reasons`)  ->  **robustness not established**, whatever r is: the
   number was not measured as the protocol says, so no verdict rests on it (re-run it).
1. r < ``ROBUST_FRACTION`` · c (point estimate)  ->  **not robust at eps**. Conclusive even
   when diagnostics warn: masking only makes attacks weaker, so the measured r is an upper
   bound of the true robust accuracy (the warning is added to the sentence).
2. any diagnostic of the model (from any of its evaluations) is WARN  ->  **robustness not
   established: diagnostics warn of gradient masking (names)**. A model is never called
   robust while a diagnostic warns.
3. the evaluation used a replication option (spike-tensor perturbation, BN in train mode,
   aborting PGD), recorded no diagnostics, or has a diagnostic that is not PASS (SKIP)
   ->  robustness not established (masking was not ruled out).
4. the lower end of r's 95 % Wilson interval >= ``ROBUST_FRACTION`` · c  ->  **empirically
   robust at eps under the <protocol> suite (<budget>)**; otherwise (r above the threshold
   but its interval reaches below it) robustness not established (too few samples).

A non-weak evaluation whose stored result could not be read (:class:`read.Unreadable`) gives
"robustness not established" too: no verdict is built around a result that was not read.

With replicates every replicate's evaluation is judged (the sentence names its replicate and
seed): the model is ``ROBUST`` only if every replicate is, ``NOT_ROBUST`` if any is not.

A model without any non-weak evaluation is "robustness not established" (weak protocols
overestimate robustness and cannot support the claim either way). Statuses: ``ROBUST``,
``NOT_ROBUST``, ``NOT_ESTABLISHED``; a model is ``ROBUST`` only if every non-weak
evaluation says so, ``NOT_ROBUST`` if any says not robust.

Claim verdict (:func:`claim_verdict`): each check compares metric(a) with metric(b):

- ``clean_accuracy``: ``models[].clean_accuracy`` (rate with Wilson interval);
- ``robust_accuracy`` (needs ``protocol``; optional ``eps`` selects among several
  evaluations): the evaluation's per-sample worst case;
- ``attack_success_rate`` (needs ``protocol``): the worst case's attack success rate;
- ``input_zero_fraction`` (optional ``source``, default "attack", falling back to any):
  the fraction of exactly-zero entries of the loss gradient w.r.t. the input pixels, mean
  over samples with SE (the sparsity result's ``input``); lacking it, the mean over
  operations of the input-gradient zero fraction (see :func:`read.input_zero_fraction`).

A check that reads an incomplete evaluation (``robust_accuracy``, ``attack_success_rate``)
is *inconclusive*, whatever its numbers: no claim verdict rests on an incomplete result.

Paired checks (the default for studies with replicates or per-sample records; formulas in
:mod:`snnrobust.analysis.paired`). Replicate r of a is paired with replicate r of b (both
evaluated on the same test images):

- with >= 2 common replicates, the check is decided by the t-based 95 % interval of the mean
  per-seed difference d̄ = mean_r(metric(a, r) - metric(b, r)) across seeds;
- with one replicate, by the 95 % interval (Agresti-Min) of the per-sample paired difference in
  proportions, from the per-image outcomes (``clean_accuracy``: the model entries'
  ``clean_correct``; ``robust_accuracy``: the worst case's ``per_sample``); no across-seed
  interval exists then and the sentence says so.

The check *holds* when that interval excludes zero on the expected side (``expect``:
"greater"/"less"), *fails* when it excludes zero on the other side, and is *inconclusive*
only when it includes zero. ``expect: not-less`` with ``margin`` m (a fraction, default
``DEFAULT_MARGIN``) tests "a is as high as b" (non-inferiority, e.g. Luu et al. 2025's "as
robust as the defended baselines"): it *holds* when the interval's lower end is above -m (a is
at most m below b), *fails* when its upper end is below -m (a is lower by more than m), and is
*inconclusive* otherwise; the sentence then says how many replicates (from the observed
across-seed spread) or paired test samples (from the observed discordance rate) would decide
a difference of the observed size at 95 % confidence with 80 % power. Every paired sentence
cites the difference, its interval and McNemar's exact p pooled over all (seed, image) pairs
(when per-sample records exist for every common replicate).

Unpaired checks (the path for results without replicates or per-sample records: one
replicate of ``attack_success_rate`` or ``input_zero_fraction``, or results written before
per-sample records existed): a check *holds* when the 95 % intervals of the two numbers do
not overlap and the difference has the expected sign, *fails* when they do not overlap and
the sign is the opposite, and is *inconclusive* when they overlap or a number is missing.
Rates use their Wilson intervals, means use mean ± 1.96·SE. Non-overlap of two 95 % intervals
is a conservative test (it needs more than a 5 % two-sided significance), deliberately so: the
report should not claim a difference it cannot defend.

Claim: **reproduced** if all checks hold; **only under the weak protocol** if at least one
check holds under a weak protocol while the same comparison (metric, a, b, expect) under a
non-weak protocol fails or is inconclusive, and no other check fails; **contradicted** if any
other check fails; else **inconclusive**.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from . import read as R
from ..analysis.paired import McNemar, SeedDifference, mcnemar, replicates_needed, samples_needed, seed_differences
from .read import Estimate, Evaluation, SeedValues, StudyLike

#: A model may be called robust only if its reliable robust accuracy (lower end of the 95 %
#: Wilson interval) is at least this fraction of its clean accuracy. One half: an attacker
#: inside the budget fails on most of the samples the model gets right.
ROBUST_FRACTION = 0.5

ROBUST, NOT_ROBUST, NOT_ESTABLISHED = "empirically robust", "not robust", "robustness not established"

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"

REPRODUCED = "reproduced"
WEAK_ONLY = "only under the weak protocol"
CONTRADICTED = "contradicted"
CLAIM_INCONCLUSIVE = "inconclusive"

EXPECT_WORDS = {"greater": "greater", "higher": "greater", ">": "greater", "more": "greater",
                "less": "less", "lower": "less", "<": "less", "smaller": "less",
                "not-less": "not-less", "not less": "not-less", "at-least": "not-less", "as-high-as": "not-less",
                ">=": "not-less"}
#: the expectations a check can test
EXPECTATIONS = ("greater", "less", "not-less")
#: ``not-less`` checks: how far below b a may be and still count as "as high as b" (5 points)
DEFAULT_MARGIN = 0.05


def decide_interval(lo: float, hi: float, expect: str, margin: float = DEFAULT_MARGIN) -> str:
    """HOLDS / FAILS / INCONCLUSIVE from a 95 % interval [lo, hi] of the difference a - b
    (module docstring: sign tests for greater/less, a non-inferiority margin for not-less)."""
    if expect == "not-less":
        if lo > -margin:
            return HOLDS
        return FAILS if hi < -margin else INCONCLUSIVE
    if expect not in ("greater", "less") or lo <= 0 <= hi:
        return INCONCLUSIVE
    return HOLDS if (lo > 0) == (expect == "greater") else FAILS


def expectation_text(r: "CheckResult") -> str:
    """The claim's expectation for a table: "a greater than b", "a at least b - 5 points"."""
    if r.expect == "not-less":
        return f"a at least b - {100 * check_margin(r.check):g} points"
    return f"a {r.expect} than b"


def check_margin(check: dict) -> float:
    """The non-inferiority margin of a ``not-less`` check (a fraction; recipes are validated on load)."""
    m = R.num(check.get("margin"))
    return DEFAULT_MARGIN if m is None else m


# -- model verdicts ------------------------------------------------------------------------
@dataclass
class ModelVerdict:
    model: str
    status: str                 # ROBUST | NOT_ROBUST | NOT_ESTABLISHED
    text: str                   # the verdict, one or more sentences
    numbers: list[str] = field(default_factory=list)  # the numbers behind it, one per line
    warnings: list[str] = field(default_factory=list)  # names of WARN diagnostics

    def to_dict(self) -> dict:
        return {"model": self.model, "status": self.status, "text": self.text, "numbers": list(self.numbers),
                "warnings": list(self.warnings)}


def _warn_names(study: StudyLike, label: str) -> list[str]:
    evs = [e for e in R.evaluations(study, model=label) if e.result.diagnostics]
    names = []
    for e in evs:
        for d in e.result.diagnostics:
            if d.status == "WARN":
                name = d.name if len(evs) == 1 else f"{d.name} under {e.protocol}"
                if name not in names:
                    names.append(name)
    return names


def _one_evaluation(study: StudyLike, e: Evaluation, clean: Optional[Estimate], warns: list[str]) -> tuple[str, str]:
    """(status, sentence) of one non-weak evaluation."""
    res = e.result
    protocol = e.protocol + R.tag(study, e.model, e.replicate, e.seed)  # "reliable (replicate 1, seed 1)"
    at = f"at {res.threat_model.label()}"
    r, _ = R.robust_accuracy(res)
    broken = res.incomplete_reasons()
    if broken:
        return NOT_ESTABLISHED, (f"robustness not established {at}: the {protocol} evaluation is INCOMPLETE "
                                 f"({'; '.join(broken)}); its robust accuracy {R.pct(r)} is only an upper bound, "
                                 f"so no verdict rests on it (re-run it)")
    if clean is None:
        clean = R.estimate(res.clean)
    if r is None or clean is None:
        return NOT_ESTABLISHED, (f"robustness not established {at}: the {protocol} evaluation recorded "
                                 f"no {'robust' if r is None else 'clean'} accuracy")
    threshold = ROBUST_FRACTION * clean.value
    rule = f"{ROBUST_FRACTION:.0%} of clean accuracy {clean.text()} = {100 * threshold:.1f}%"
    if r.value < threshold:
        s = f"not robust {at}: {protocol} robust accuracy {r.text()} is below {rule}"
        if warns:
            s += (f"; diagnostics also warn of gradient masking ({', '.join(warns)}), so the true "
                  f"robust accuracy may be lower still")
        return NOT_ROBUST, s
    if warns:
        return NOT_ESTABLISHED, (f"robustness not established: diagnostics warn of gradient masking "
                                 f"({', '.join(warns)}); the {protocol} robust accuracy {r.text()} {at} "
                                 f"may be an overestimate")
    flags = R.replication_flags(res)
    if flags:
        return NOT_ESTABLISHED, (f"robustness not established {at}: the {protocol} evaluation used "
                                 f"replication options ({'; '.join(flags)})")
    diags = res.diagnostics
    if not diags:
        return NOT_ESTABLISHED, (f"robustness not established {at}: no masking diagnostics were recorded, so "
                                 f"the {protocol} robust accuracy {r.text()} may be inflated by masking")
    not_pass = [d.name for d in diags if d.status != "PASS"]
    if not_pass:
        return NOT_ESTABLISHED, (f"robustness not established {at}: diagnostics did not run "
                                 f"({', '.join(not_pass)}: SKIP), so masking was not ruled out "
                                 f"({protocol} robust accuracy {r.text()})")
    if r.lo is None or r.lo < threshold:
        return NOT_ESTABLISHED, (f"robustness not established {at}: {protocol} robust accuracy {r.text()} "
                                 f"is not clearly above {rule} (its 95 % interval reaches below it)")
    budget = res.budget.name or "unrecorded"
    return ROBUST, (f"empirically robust {at} under the {protocol} suite ({budget} budget): robust accuracy "
                    f"{r.text()} >= {rule}, and all {len(diags)} masking diagnostics PASS")


def model_verdict(study: StudyLike, label: str) -> ModelVerdict:
    """The verdict on one model, from its evaluations (rules in the module docstring)."""
    study = R.load(study)
    clean = R.clean_accuracy(study, label)
    evs = R.evaluations(study, model=label)
    warns = _warn_names(study, label)
    numbers = [f"clean accuracy {R.per_seed_clean(study, label).text()}"]
    for e in evs:
        r, how = R.robust_accuracy(e.result)
        kind = "weak protocol" if R.evaluation_is_weak(study, e) else "reliable protocol"
        numbers.append(f"{e.protocol}{R.tag(study, label, e.replicate, e.seed)} ({kind}; "
                       f"{e.result.threat_model.label()}): robust accuracy "
                       f"{R.pct(r)} ({how})"
                       + (" INCOMPLETE (upper bound)" if not e.result.complete else ""))
    for e in evs:
        for d in e.result.diagnostics:
            numbers.append(f"diagnostic {d.name} ({e.protocol}{R.tag(study, label, e.replicate, e.seed)}): {d.status}"
                           + (f" - {d.summary}" if d.summary else ""))
    lost = [u for u in R.unreadable(study, "evaluation", label) if not R.evaluation_is_weak(study, u)]
    for u in lost:
        numbers.append(f"{u.what}: result UNREADABLE ({u.reason})")
    strong = [e for e in evs if not R.evaluation_is_weak(study, e)]
    if not strong and not lost:
        weak = sorted({e.protocol for e in evs})
        why = (f"only weak protocol(s) were run ({', '.join(weak)}), which overestimate robustness"
               if weak else "the model was not attacked")
        text = f"robustness not established: {why}"
        if warns:
            text += f"; diagnostics warn of gradient masking ({', '.join(warns)})"
        return ModelVerdict(label, NOT_ESTABLISHED, text + ".", numbers, warns)
    parts = [_one_evaluation(study, e, clean, warns) for e in strong]
    parts += [(NOT_ESTABLISHED, f"robustness not established: the stored {u.what} evaluation could not be read "
                                f"({u.reason}), so no verdict rests on it (re-run it)") for u in lost]
    statuses = [s for s, _ in parts]
    if NOT_ROBUST in statuses:
        status = NOT_ROBUST
    elif all(s == ROBUST for s in statuses) and not warns:
        status = ROBUST
    else:
        status = NOT_ESTABLISHED
    text = "; ".join(t for _, t in parts)
    return ModelVerdict(label, status, text + ".", numbers, warns)


# -- claim checks --------------------------------------------------------------------------
@dataclass
class CheckResult:
    check: dict
    metric: str
    a: str
    b: str
    expect: str                 # "greater" | "less" | the unrecognised value
    protocol: Optional[str]
    weak: Optional[bool]        # the protocol is weak (None: no protocol / unknown)
    outcome: str                # HOLDS | FAILS | INCONCLUSIVE
    value_a: Optional[Estimate]
    value_b: Optional[Estimate]
    sentence: str               # the comparison for a human, with its numbers
    detail: str = ""            # the sentence without its "<metric> under <protocol>: " head
    noun: str = ""
    paired: Optional["Paired"] = None      # the paired comparison the outcome came from (None: unpaired)
    seeds_a: Optional[SeedValues] = None   # per-seed values of a and b (tables show them)
    seeds_b: Optional[SeedValues] = None

    def key(self) -> tuple:
        """The comparison without its protocol (pairs a weak check with its reliable twin)."""
        return self.metric, self.a, self.b, self.expect

    def text_a(self) -> str:
        """a's value for a table: mean, across-seed interval and per-seed values with replicates."""
        return self.seeds_a.text() if self.seeds_a is not None and self.seeds_a.n else _show(self.value_a)

    def text_b(self) -> str:
        return self.seeds_b.text() if self.seeds_b is not None and self.seeds_b.n else _show(self.value_b)

    def to_dict(self) -> dict:
        d = {"check": self.check, "outcome": self.outcome, "sentence": self.sentence,
             "a": None if self.value_a is None else self.text_a(),
             "b": None if self.value_b is None else self.text_b()}
        if self.paired is not None:
            d["paired"] = self.paired.to_dict()
        return d


@dataclass
class Paired:
    """A paired comparison of a and b under one check: per-seed values of each (``seeds_a``,
    ``seeds_b``, replicates in common), the across-seed difference (``across``, None with fewer
    than 2 common replicates) and McNemar's test pooled over (seed, image) pairs (``test``, None
    without per-sample records for every common replicate)."""

    seeds_a: SeedValues
    seeds_b: SeedValues
    replicates: list[int]
    across: Optional[SeedDifference]
    test: Optional[McNemar]

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        """The interval that decides (module docstring): across seeds with >= 2 replicates, else per sample."""
        if self.across is not None and self.across.has_interval:
            return self.across.lo, self.across.hi
        if self.test is not None:
            return self.test.lo, self.test.hi
        return None

    @property
    def difference(self) -> Optional[float]:
        if self.across is not None:
            return self.across.mean
        return None if self.test is None else self.test.diff

    def outcome(self, expect: str, margin: float = DEFAULT_MARGIN) -> str:
        iv = self.interval
        return INCONCLUSIVE if iv is None else decide_interval(iv[0], iv[1], expect, margin)

    def needed(self, shift: float = 0.0) -> str:
        """How much more data would decide a difference of the observed size (95 % / 80 % power);
        ``shift``: the non-inferiority margin, so the distance to decide is difference + margin."""
        if self.across is not None and self.across.has_interval:
            r = replicates_needed(self.across.mean + shift, self.across.sd)
            if r is None:
                return "the observed mean difference is zero, so no number of replicates can be estimated from it"
            more = f"more than {r - 1}" if r > 1000 else f"about {r}"
            return (f"deciding a difference of this size at 95 % confidence with 80 % power would take {more} "
                    f"replicates (from the observed across-seed spread, sd {100 * self.across.sd:.2f} points)")
        if self.test is not None:
            n = samples_needed(self.test.discordant / self.test.n, self.test.diff + shift)
            if n is None:
                return ("the two models are right on different images equally often, so no sample size can be "
                        "estimated from them")
            return (f"deciding a difference of this size at 95 % confidence with 80 % power would take about {n} "
                    f"paired test images (from the observed discordance rate "
                    f"{100 * self.test.discordant / self.test.n:.1f}%), and more than one replicate to know it holds "
                    f"across training seeds")
        return ""

    def text(self) -> str:
        """The paired numbers for a sentence: difference, its interval, McNemar's p."""
        parts = []
        if self.across is not None and self.across.has_interval:
            parts.append(f"paired difference {100 * self.across.mean:+.1f} points [{100 * self.across.lo:+.1f}, "
                         f"{100 * self.across.hi:+.1f}] (95 % t interval across {self.across.n} seeds; per seed "
                         f"{', '.join(f'{100 * d:+.1f}' for d in self.across.diffs)})")
        elif self.test is not None:
            parts.append(f"one replicate, so no across-seed interval (seed-to-seed variation is not measured); "
                         f"per-sample paired difference {100 * self.test.diff:+.1f} points "
                         f"[{100 * self.test.lo:+.1f}, {100 * self.test.hi:+.1f}] (95 %, Agresti-Min)")
        if self.test is not None:
            over = f"{len(self.replicates)} seeds x {self.test.n // max(len(self.replicates), 1)} images" \
                if len(self.replicates) > 1 else f"{self.test.n} images"
            parts.append(f"McNemar over {over}: {self.test.a_only} pairs only a right vs {self.test.b_only} only b "
                         f"right, exact p {_p(self.test.p)}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        iv = self.interval
        return {"replicates": list(self.replicates), "difference": self.difference,
                "interval": None if iv is None else list(iv),
                "per_seed_differences": None if self.across is None else list(self.across.diffs),
                "mcnemar": None if self.test is None else {
                    "n": self.test.n, "a_only": self.test.a_only, "b_only": self.test.b_only, "p": self.test.p}}


def _p(p: float) -> str:
    """``= 0.031`` or ``< 0.0001``."""
    return f"= {p:.2g}" if p >= 1e-4 else "< 0.0001"


def _pick_eval(study: StudyLike, model: str, check: dict) -> tuple[Optional[Evaluation], str]:
    protocol = R.text(check.get("protocol"))
    if not protocol:
        return None, "the check names no protocol"
    evs = R.evaluations(study, model=model, protocol=protocol)
    eps = R.num(check.get("eps"))
    if eps is not None:
        evs = [e for e in evs if abs(e.result.threat_model.eps - eps) < 1e-9]
    if not evs:
        return None, (f"no {protocol} evaluation of {model}"
                      + (f" at eps {R.format_eps(eps)}" if eps is not None else ""))
    return evs[0], ""


def _clean(study: StudyLike, model: str, check: dict) -> tuple[Optional[Estimate], str]:
    est = R.clean_accuracy(study, model)
    return est, "" if est is not None else f"no clean accuracy of {model}"


def _robust(study: StudyLike, model: str, check: dict) -> tuple[Optional[Estimate], str]:
    e, why = _pick_eval(study, model, check)
    if e is None:
        return None, why
    est, how = R.robust_accuracy(e.result)
    return est, how


def _success(study: StudyLike, model: str, check: dict) -> tuple[Optional[Estimate], str]:
    e, why = _pick_eval(study, model, check)
    if e is None:
        return None, why
    est = R.estimate(e.result.worst_case.attack_success_rate)
    return est, "" if est is not None else f"no attack success rate in {model}'s {e.protocol} evaluation"


def _zero_fraction(study: StudyLike, model: str, check: dict) -> tuple[Optional[Estimate], str]:
    source = R.text(check.get("source"))
    entries = R.sparsity_entries(study, model=model, source=source or "attack")
    if not entries and not source:
        entries = R.sparsity_entries(study, model=model)
    if not entries:
        return None, f"no sparsity measurement of {model}" + (f" (source {source})" if source else "")
    return R.input_zero_fraction(entries[0].result)


def _eval_per_replicate(study: StudyLike, model: str, check: dict) -> dict[int, Evaluation]:
    """The evaluation of every replicate of ``model`` the check reads (its protocol, its eps)."""
    protocol = R.text(check.get("protocol"))
    if not protocol:
        return {}
    eps = R.num(check.get("eps"))
    out: dict[int, Evaluation] = {}
    for e in R.evaluations(study, model=model, protocol=protocol):
        if eps is not None and abs(e.result.threat_model.eps - eps) >= 1e-9:
            continue
        out.setdefault(e.replicate, e)
    return out


def _per_seed(study: StudyLike, metric: str, model: str, check: dict) -> tuple[SeedValues, dict[int, list[bool]]]:
    """(per-seed values, per-replicate per-sample correctness) of ``model`` for ``metric``
    (per-sample records exist for clean and robust accuracy only)."""
    if metric == "clean_accuracy":
        return R.per_seed_clean(study, model), R.clean_correct(study, model)
    if metric in _FROM_EVALUATION:
        vals, per = [], {}
        for r, e in sorted(_eval_per_replicate(study, model, check).items()):
            if metric == "robust_accuracy":
                est, _ = R.robust_accuracy(e.result)
                correct = R.robust_correct(e.result)
                if correct is not None:
                    per[r] = correct
            else:
                est = R.estimate(e.result.worst_case.attack_success_rate)
            if est is not None:
                vals.append((r, e.seed, est))
        return SeedValues(tuple(vals)), per
    if metric == "input_zero_fraction":
        return R.per_seed_zero_fraction(study, model, R.text(check.get("source")) or "attack"), {}
    return SeedValues(()), {}


def paired_comparison(study: StudyLike, metric: str, a: str, b: str, check: dict) -> Optional[Paired]:
    """The paired comparison of ``a`` and ``b`` for one check, or None when the study has
    neither two common replicates nor per-sample records of both (then the unpaired rule
    applies; module docstring)."""
    sa, pa = _per_seed(study, metric, a, check)
    sb, pb = _per_seed(study, metric, b, check)
    va, vb = sa.by_replicate(), sb.by_replicate()
    common = sorted(set(va) & set(vb))
    if not common:
        return None
    across = seed_differences([va[r].value for r in common], [vb[r].value for r in common]) \
        if len(common) >= 2 else None
    test = None
    if all(r in pa and r in pb and len(pa[r]) == len(pb[r]) and pa[r] for r in common):
        test = mcnemar([x for r in common for x in pa[r]], [x for r in common for x in pb[r]])
    if across is None and test is None:
        return None
    keep_a = SeedValues(tuple(t for t in sa.values if t[0] in common))
    keep_b = SeedValues(tuple(t for t in sb.values if t[0] in common))
    return Paired(keep_a, keep_b, common, across, test)


#: metrics read from an evaluation result (inconclusive when that evaluation is incomplete)
_FROM_EVALUATION = ("robust_accuracy", "attack_success_rate")


def _reads_incomplete(study: StudyLike, model: str, check: dict) -> bool:
    """Whether any replicate's evaluation the check reads is incomplete."""
    return any(not e.result.complete for e in _eval_per_replicate(study, model, check).values())


#: metric name -> (reader(study, model, check) -> (estimate, note), noun for sentences)
METRICS: dict[str, tuple[Callable, str]] = {
    "clean_accuracy": (_clean, "clean accuracy"),
    "robust_accuracy": (_robust, "robust accuracy"),
    "attack_success_rate": (_success, "attack success rate"),
    "input_zero_fraction": (_zero_fraction, "input-gradient zero fraction"),
}


def compare(a: Optional[Estimate], b: Optional[Estimate], expect: str, margin: float = DEFAULT_MARGIN) -> str:
    """HOLDS / FAILS / INCONCLUSIVE for "a is ``expect`` than b" (rules in the module docstring)."""
    expect = EXPECT_WORDS.get(str(expect).lower(), "")
    if a is None or b is None or not expect or not (a.has_interval and b.has_interval):
        return INCONCLUSIVE
    if expect == "not-less":
        # unpaired: the widest difference the two intervals allow (conservative, like non-overlap)
        return decide_interval(a.lo - b.hi, a.hi - b.lo, expect, margin)
    if a.overlaps(b) or a.value == b.value:
        return INCONCLUSIVE
    return HOLDS if (a.value > b.value) == (expect == "greater") else FAILS


def _show(e: Optional[Estimate]) -> str:
    if e is None:
        return "not measured"
    if e.kind == "mean":
        s = f"{e.value:.3f}"
        if e.has_interval:
            s += f" [{e.lo:.3f}, {e.hi:.3f}]"
        return s
    return e.text()


def evaluate_check(study: StudyLike, check: dict) -> CheckResult:
    """Read both numbers of one check and compare them."""
    study = R.load(study)
    check = R.as_dict(check)
    metric = R.text(check.get("metric"), "?")
    a, b = R.text(check.get("a"), "?"), R.text(check.get("b"), "?")
    expect_raw = R.text(check.get("expect"), "?")
    expect = EXPECT_WORDS.get(expect_raw.lower(), expect_raw)
    protocol = R.text(check.get("protocol")) or None
    weak = check["weak"] if isinstance(check.get("weak"), bool) else (
        R.protocol_is_weak(study, protocol) if protocol else None)
    where = f" under {protocol}" if protocol else ""
    if metric not in METRICS:
        why = f"unknown metric {metric!r} (known: {', '.join(METRICS)}): not evaluated"
        return CheckResult(check, metric, a, b, expect, protocol, weak, INCONCLUSIVE, None, None, why, why, metric)
    reader, noun = METRICS[metric]
    va, note_a = reader(study, a, check)
    vb, note_b = reader(study, b, check)
    paired = paired_comparison(study, metric, a, b, check) if va is not None and vb is not None else None
    margin = check_margin(check)
    if paired is not None:
        # the values shown are the means over the paired replicates; the outcome is the paired one
        va, vb = paired.seeds_a.summary(), paired.seeds_b.summary()
        outcome = paired.outcome(expect, margin)
    else:
        outcome = compare(va, vb, expect, margin)
    word = {"greater": "higher", "less": "lower"}.get(expect, expect)
    within = f"within {100 * margin:g} points"
    shown_a = paired.seeds_a.text() if paired is not None else _show(va)
    shown_b = paired.seeds_b.text() if paired is not None else _show(vb)
    head = f"{a} {shown_a} vs {b} {shown_b}"
    if paired is not None:
        head += f" - {paired.text()}"
    incomplete = [m for m in (a, b) if metric in _FROM_EVALUATION and _reads_incomplete(study, m, check)]
    if incomplete:
        outcome = INCONCLUSIVE
        tail = (f"the {protocol} evaluation of {' and '.join(incomplete)} is INCOMPLETE (an attack crashed), "
                f"so no verdict rests on it")
    elif va is None or vb is None:
        tail = "not measured (" + "; ".join(n for n in (note_a if va is None else "", note_b if vb is None else "")
                                            if n) + ")"
    elif expect not in EXPECTATIONS:
        tail = f"cannot test expectation {expect_raw!r} (use {', '.join(EXPECTATIONS)})"
    elif expect == "not-less" and (paired is not None or (va.has_interval and vb.has_interval)):
        tail = {HOLDS: f"{a} is as high as {b} ({within}), as claimed",
                FAILS: f"{a} is lower than {b} by more than {100 * margin:g} points, the opposite of the claim"}.get(
            outcome, f"the interval of the difference reaches below -{100 * margin:g} points but not wholly, so "
                     f"'{a} as high as {b} ({within})' is neither shown nor refuted"
                     + ("; " + paired.needed(margin) if paired is not None and paired.needed(margin) else ""))
    elif outcome == HOLDS:
        tail = f"{a} is {word}, as claimed"
    elif outcome == FAILS:
        tail = f"{a} is {'lower' if expect == 'greater' else 'higher'}, the opposite of the claim"
    elif paired is not None:
        tail = "the interval of the paired difference includes zero: no significant difference; " + paired.needed()
    elif not (va.has_interval and vb.has_interval):
        tail = "no uncertainty recorded, so the difference cannot be judged"
    else:
        tail = "the 95 % intervals overlap: no significant difference"
    detail = f"{head} - {tail}"
    return CheckResult(check, metric, a, b, expect, protocol, weak, outcome, va, vb, f"{noun}{where}: {detail}",
                       detail, noun, paired, paired.seeds_a if paired else None, paired.seeds_b if paired else None)


# -- claim verdicts ------------------------------------------------------------------------
#: The papers a recipe's claims come from, by the recipe's ``seed`` id (the report names the paper).
PAPERS = {"000": "Luu et al. 2025", "001": "Sharmin et al. 2020"}


@dataclass
class ClaimVerdict:
    id: str
    seed: str
    claim: str
    verdict: str                # REPRODUCED | WEAK_ONLY | CONTRADICTED | CLAIM_INCONCLUSIVE
    explanation: str            # one or two sentences for a human
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def paper(self) -> str:
        """The paper the claim is from, as users know it (the seed id only means something inside the team)."""
        return PAPERS.get(self.seed, f"seed paper {self.seed}" if self.seed else "a seed paper")

    def to_dict(self) -> dict:
        return {"id": self.id, "seed": self.seed, "paper": self.paper, "claim": self.claim, "verdict": self.verdict,
                "explanation": self.explanation, "checks": [c.to_dict() for c in self.checks]}


def decide(results: list[CheckResult]) -> tuple[str, str]:
    """(verdict, explanation) from evaluated checks — the claim rules of the module docstring."""
    if not results:
        return CLAIM_INCONCLUSIVE, "The claim has no checks, so nothing was compared."
    if all(r.outcome == HOLDS for r in results):
        return REPRODUCED, "Reproduced: every check holds - " + "; ".join(r.sentence for r in results) + "."
    pairs: list[tuple[CheckResult, CheckResult]] = []
    explained: set[int] = set()
    for strong in results:
        if strong.weak is not False or strong.outcome == HOLDS:
            continue
        for weak in results:
            if weak.weak is True and weak.outcome == HOLDS and weak.key() == strong.key():
                pairs.append((weak, strong))
                explained.update((id(weak), id(strong)))
                break
    others = [r for r in results if id(r) not in explained]
    failed = [r for r in others if r.outcome == FAILS]
    if pairs and not failed:
        parts = [f"{w.noun} under the weak {w.protocol} protocol: {w.detail}; but under {s.protocol}: {s.detail}"
                 for w, s in pairs]
        text = "Holds only under the weak protocol: " + "; ".join(parts) + "."
        unsure = [r for r in others if r.outcome == INCONCLUSIVE]
        if unsure:
            text += " Also inconclusive: " + "; ".join(r.sentence for r in unsure) + "."
        return WEAK_ONLY, text
    failed = [r for r in results if r.outcome == FAILS]
    if failed:
        text = "Contradicted: " + "; ".join(r.sentence for r in failed) + "."
        held = [r for r in results if r.outcome == HOLDS]
        if held:
            text += " Holding: " + "; ".join(r.sentence for r in held) + "."
        return CONTRADICTED, text
    unsure = [r for r in results if r.outcome != HOLDS]
    text = "Inconclusive: " + "; ".join(r.sentence for r in unsure) + "."
    held = [r for r in results if r.outcome == HOLDS]
    if held:
        text += " Holding: " + "; ".join(r.sentence for r in held) + "."
    return CLAIM_INCONCLUSIVE, text


def claim_verdict(study: StudyLike, claim: dict) -> ClaimVerdict:
    """Evaluate every check of one claim ``{id, seed, text, checks: [...]}`` and decide."""
    study = R.load(study)
    claim = R.as_dict(claim)
    results = [evaluate_check(study, c) for c in R.as_list(claim.get("checks")) if isinstance(c, dict)]
    verdict, explanation = decide(results)
    return ClaimVerdict(R.text(claim.get("id"), "claim"), str(claim.get("seed", "")), R.text(claim.get("text")),
                        verdict, explanation, results)


def all_verdicts(study: StudyLike) -> tuple[list[ModelVerdict], list[ClaimVerdict]]:
    study = R.load(study)
    return ([model_verdict(study, m) for m in R.model_labels(study)],
            [claim_verdict(study, c) for c in R.as_list(study.get("claims")) if isinstance(c, dict)])
