"""Evaluation results: their types, the JSON schema, the terminal table, and atomic files.

JSON schema ``snnrobust.evaluation/1`` (every number travels with its threat model)::

    {"schema", "model", "data", "threat_model", "suite", "attack", "budget", "seed",
     "clean": {k, n, value, ci}, "vote", "eot", "stochastic",
     "attacks": [{"id", "attack", "estimator", "eot", "vote", "steps", "restarts", "kind",
                  "scope", "robust_accuracy", "attack_success_rate", "n_attacked", "n_broken",
                  "loss_trace_mean", "time_s", "meta", "gradient_images", "forward_images",
                  "broken": [sample index]}],
     "worst_case": {"robust_accuracy", "attack_success_rate", "broken_by": {id: count},
                    "per_sample": [id | "clean" | null, ...]},
     "eps_curve": [{"eps", "robust_accuracy", "attacks": {id: rate}}],
     "diagnostics": [{"name", "status", "summary", "numbers"}],
     "replication": [...], "notes": [...], "timing_s", "timing_breakdown_s",
     "complete": bool, "incomplete": [{"attack", "eps", "error", "not_attacked": [sample index],
                                       "n_not_attacked", "n_scheduled", "counted_robust", "reason"}],
     "machine": {"cpu", "cpu_count", "threads", "interop_threads", "omp_num_threads", "torch": {...},
                 "device", "gpu", "python", "platform"}}

``machine`` (:func:`snnrobust.environment.machine_info`) says where the numbers were computed:
the same seed reproduces them exactly only on the same CPU type, thread count and torch build
(``{}`` in results written before it existed).

``broken`` lists the samples each attack broke (indices into the evaluated set; in a cascade
only samples still robust were attacked). ``gradient_images`` / ``forward_images`` are the
attack's compute in images: forward passes that built an input-gradient graph (each EOT pass
counted) and forward-only passes (scoring, votes, Square queries); transfer attacks count the
target's passes only, not the crafting on their sources.

``scope`` says how an attack's robust accuracy reads: ``standalone`` (the attack alone on
every sample) or ``cumulative`` (cascade suites: accuracy after this attack and all before it,
each attack run only on samples still robust). ``per_sample[i]`` names the attack that first
broke sample i (``"clean"``: misclassified without attack; null: robust to everything).

``complete`` is false when an attack crashed on some samples even after the out-of-memory
retries at smaller batches: ``incomplete`` lists, per failed attack run (``eps`` says which
point of the curve), the samples it never attacked and how many of them the worst case still
counts robust (``counted_robust``: the robust accuracy may be that many samples too high).
Samples the attack broke in its finished batches are kept. Results written before this field
existed are read as incomplete when an attack record carries an ``error``.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so
an existing result is never left half-written or destroyed by a failing write.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import ConfigError
from ..io import atomic_open
from .diagnostics import DiagnosticResult, overall_status
from .metrics import Rate
from .suites import BUDGETS, SUITES, Budget
from .threat import ThreatModel, format_eps

SCHEMA = "snnrobust.evaluation/1"


def json_ready(obj: Any) -> Any:
    """Plain JSON data: tensors to lists, tuples to lists, non-finite floats to null."""
    if isinstance(obj, torch.Tensor):
        return json_ready(obj.detach().cpu().tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "to_dict"):
        return json_ready(obj.to_dict())
    return repr(obj)


# ----------------------------------------------------------------------------- records
@dataclass
class AttackRecord:
    id: str
    attack: dict                   # Attack.to_dict(): name + every setting
    estimator: Optional[dict]      # GradientEstimator.to_dict(), None for attacks without target gradients
    eot: Optional[int]
    vote: int
    steps: Optional[int]
    restarts: Optional[int]
    kind: str                      # single-step | gradient | score | transfer | noise
    scope: str                     # standalone | cumulative
    robust_accuracy: Rate
    attack_success_rate: Rate
    n_attacked: int
    n_broken: int
    time_s: float
    loss_trace_mean: Optional[list] = None
    meta: dict = field(default_factory=dict)
    gradient_images: int = 0       # compute: images forwarded with an input-gradient graph (EOT passes each)
    forward_images: int = 0        # compute: images forwarded without one (scoring, votes, Square queries)
    broken: list = field(default_factory=list)  # indices of the samples this attack broke (of those it attacked)

    def to_dict(self) -> dict:
        return {"id": self.id, "attack": self.attack, "estimator": self.estimator, "eot": self.eot,
                "vote": self.vote, "steps": self.steps, "restarts": self.restarts, "kind": self.kind,
                "scope": self.scope, "robust_accuracy": self.robust_accuracy.to_dict(),
                "attack_success_rate": self.attack_success_rate.to_dict(), "n_attacked": self.n_attacked,
                "n_broken": self.n_broken, "time_s": self.time_s, "loss_trace_mean": self.loss_trace_mean,
                "meta": self.meta, "gradient_images": self.gradient_images, "forward_images": self.forward_images,
                "broken": list(self.broken)}

    @classmethod
    def from_dict(cls, d: dict) -> "AttackRecord":
        return cls(id=d["id"], attack=d["attack"], estimator=d.get("estimator"), eot=d.get("eot"),
                   vote=d.get("vote", 1), steps=d.get("steps"), restarts=d.get("restarts"), kind=d["kind"],
                   scope=d["scope"], robust_accuracy=Rate.from_dict(d["robust_accuracy"]),
                   attack_success_rate=Rate.from_dict(d["attack_success_rate"]), n_attacked=d["n_attacked"],
                   n_broken=d["n_broken"], time_s=d.get("time_s", 0.0), loss_trace_mean=d.get("loss_trace_mean"),
                   meta=d.get("meta") or {}, gradient_images=int(d.get("gradient_images") or 0),
                   forward_images=int(d.get("forward_images") or 0), broken=list(d.get("broken") or []))

    @property
    def estimator_label(self) -> str:
        if not self.estimator:
            return "-"
        return str(self.estimator.get("label") or self.estimator.get("name"))

    @property
    def error(self) -> Optional[str]:
        """Why this attack failed on some samples (``meta["error"]``), None when it did not."""
        err = self.meta.get("error")
        return str(err) if err else None

    @property
    def n_not_attacked(self) -> Optional[int]:
        """Samples a failed attack never attacked (``meta["not_attacked"]``), None when unrecorded."""
        n = self.meta.get("not_attacked")
        return n if isinstance(n, int) and not isinstance(n, bool) else None


@dataclass
class WorstCase:
    robust_accuracy: Rate
    attack_success_rate: Rate
    broken_by: dict               # attack id -> samples it broke first
    per_sample: list              # attack id | "clean" | None, per sample

    def to_dict(self) -> dict:
        return {"robust_accuracy": self.robust_accuracy.to_dict(),
                "attack_success_rate": self.attack_success_rate.to_dict(),
                "broken_by": dict(self.broken_by), "per_sample": list(self.per_sample)}

    @classmethod
    def from_dict(cls, d: dict) -> "WorstCase":
        return cls(Rate.from_dict(d["robust_accuracy"]), Rate.from_dict(d["attack_success_rate"]),
                   dict(d.get("broken_by") or {}), list(d.get("per_sample") or []))


@dataclass
class CurvePoint:
    eps: float
    robust_accuracy: Rate                       # worst case over the suite's attacks at this eps
    attacks: dict = field(default_factory=dict)  # attack id -> Rate
    carried_over: int = 0                       # samples counted broken from a smaller eps (cascade)

    def to_dict(self) -> dict:
        return {"eps": self.eps, "robust_accuracy": self.robust_accuracy.to_dict(),
                "attacks": {k: v.to_dict() for k, v in self.attacks.items()}, "carried_over": self.carried_over}

    @classmethod
    def from_dict(cls, d: dict) -> "CurvePoint":
        return cls(float(d["eps"]), Rate.from_dict(d["robust_accuracy"]),
                   {k: Rate.from_dict(v) for k, v in (d.get("attacks") or {}).items()}, int(d.get("carried_over", 0)))


def budget_from_dict(d: dict) -> Budget:
    d = dict(d)
    d.pop("below_standard", None)
    for k in ("surrogate_widths", "extra_estimators", "estimator_attacks", "own_attacks"):
        d[k] = tuple(d.get(k) or ())
    d["overrides"] = tuple(sorted((d.get("overrides") or {}).items()))
    return Budget(**d)


@dataclass
class EvaluationResult:
    model: dict
    data: dict
    threat_model: ThreatModel
    suite: Optional[str]
    attack: Optional[str]
    budget: Budget
    seed: int
    clean: Rate
    vote: int
    eot: Optional[int]
    stochastic: bool
    attacks: list[AttackRecord]
    worst_case: WorstCase
    eps_curve: list[CurvePoint] = field(default_factory=list)
    diagnostics: list[DiagnosticResult] = field(default_factory=list)
    replication: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    protocol: dict = field(default_factory=dict)
    timing_s: float = 0.0
    timing_breakdown_s: dict = field(default_factory=dict)
    incomplete: list[dict] = field(default_factory=list)  # failed attack runs (see the module docstring)
    machine: dict = field(default_factory=dict)  # where it was computed (snnrobust.environment.machine_info)
    schema: str = SCHEMA

    # -- names -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The suite's or the attack's name (used in file names)."""
        return self.suite or self.attack or "attack"

    @property
    def robust_accuracy(self) -> Rate:
        return self.worst_case.robust_accuracy

    @property
    def complete(self) -> bool:
        """False when an attack left samples unattacked: the worst case is then an upper bound."""
        return not self.incomplete

    def incomplete_summary(self) -> str:
        """One line naming every failed attack run (empty when complete)."""
        return "; ".join(f"{f.get('attack', '?')} at eps={format_eps(f['eps']) if _is_num(f.get('eps')) else '?'} "
                         f"did not attack {f.get('n_not_attacked', '?')} samples "
                         f"({f.get('error') or 'no error recorded'})" for f in self.incomplete)

    def incomplete_reasons(self) -> list[str]:
        """One sentence per failed attack run, saying what was not attacked ([] when complete)."""
        return [f.get("reason") or failure_reason(f, self.clean.n) for f in self.incomplete]

    @property
    def diagnostics_status(self) -> str:
        return overall_status(self.diagnostics) if self.diagnostics else "SKIP"

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return json_ready({
            "schema": self.schema, "model": self.model, "data": self.data,
            "threat_model": self.threat_model.to_dict(), "suite": self.suite, "attack": self.attack,
            "budget": self.budget.name, "budget_settings": self.budget.to_dict(), "seed": self.seed,
            "clean": self.clean.to_dict(), "vote": self.vote, "eot": self.eot, "stochastic": self.stochastic,
            "protocol": self.protocol, "attacks": [a.to_dict() for a in self.attacks],
            "worst_case": self.worst_case.to_dict(), "eps_curve": [p.to_dict() for p in self.eps_curve],
            "diagnostics": [d.to_dict() for d in self.diagnostics], "diagnostics_status": self.diagnostics_status,
            "replication": self.replication, "notes": self.notes, "timing_s": self.timing_s,
            "timing_breakdown_s": self.timing_breakdown_s,
            "complete": self.complete, "incomplete": self.incomplete, "machine": self.machine,
        })

    @classmethod
    def from_dict(cls, d: dict) -> "EvaluationResult":
        if d.get("schema") != SCHEMA:
            raise ConfigError(f"not a snnrobust evaluation result (schema {d.get('schema')!r}, expected {SCHEMA})")
        settings = d.get("budget_settings")
        budget = budget_from_dict(settings) if settings else BUDGETS[d["budget"]]
        return cls(model=d.get("model") or {}, data=d.get("data") or {},
                   threat_model=ThreatModel.from_dict(d["threat_model"]), suite=d.get("suite"),
                   attack=d.get("attack"), budget=budget, seed=int(d.get("seed", 0)),
                   clean=Rate.from_dict(d["clean"]), vote=int(d.get("vote", 1)), eot=d.get("eot"),
                   stochastic=bool(d.get("stochastic", False)),
                   attacks=[AttackRecord.from_dict(a) for a in d.get("attacks") or []],
                   worst_case=WorstCase.from_dict(d["worst_case"]),
                   eps_curve=[CurvePoint.from_dict(p) for p in d.get("eps_curve") or []],
                   diagnostics=[DiagnosticResult.from_dict(x) for x in d.get("diagnostics") or []],
                   replication=list(d.get("replication") or []), notes=list(d.get("notes") or []),
                   protocol=d.get("protocol") or {}, timing_s=float(d.get("timing_s") or 0.0),
                   timing_breakdown_s=d.get("timing_breakdown_s") or {}, incomplete=incomplete_from_dict(d),
                   machine=d.get("machine") if isinstance(d.get("machine"), dict) else {})

    # -- terminal table --------------------------------------------------------------------
    def table(self) -> str:
        """A readable report: the threat model line first, then every number with its 95 %
        Wilson interval, n, estimator, steps, restarts and EOT."""
        t = self.threat_model
        lines = [f"Threat model: {t.label()}"]
        if not self.complete:
            lines.append("INCOMPLETE: an attack crashed on some samples, so the robust accuracy below is an upper "
                         "bound: " + self.incomplete_summary())
        lines.extend(n for n in self.notes if n.startswith("WARNING"))
        if self.replication:
            lines.append("REPLICATION OPTIONS ON (not a valid input-level threat model): "
                         + "; ".join(self.replication))
        what = f"suite {self.suite}" if self.suite else f"attack {self.attack}"
        if self.suite in SUITES and SUITES[self.suite].fixed_protocol:
            effort = "settings fixed by the paper's protocol (no budget)"
        else:
            effort = f"budget {self.budget.name}" + (" (below the >=100-step standard)" if self.budget.below_standard
                                                    and self.suite in ("reliable", "standard") else "")
        lines.append(f"{what} | {effort}"
                     + f" | seed {self.seed} | vote {self.vote}" + (" (stochastic model)" if self.stochastic else ""))
        m = self.model.get("config", {}) if isinstance(self.model, dict) else {}
        model_name = m.get("name") or self.model.get("class", "model")
        src = self.model.get("checkpoint")
        data = self.data or {}
        lines.append(f"model {model_name}" + (f" ({src})" if src else "")
                     + f" | data {data.get('dataset', '?')} {data.get('split', '')} n={self.clean.n}"
                     + (f" ({data['indices']})" if data.get("start") else ""))
        lines.append("")
        lines.append(f"Clean accuracy        {self.clean.percent():<24} n={self.clean.n}")
        lines.append("")
        head = f"{'attack':<34} {'robust acc [95% CI]':<24} {'success [95% CI]':<24} {'n_att':>6} " \
               f"{'estimator':<22} {'steps':>6} {'rst':>4} {'eot':>4} {'time':>7}"
        lines.append(head)
        lines.append("-" * len(head))
        for a in self.attacks:
            if a.meta.get("error") and not a.n_attacked:
                lines.append(f"{a.id[:34]:<34} FAILED: {str(a.meta['error'])[:90]}")
                continue
            lines.append(f"{a.id[:34]:<34} {a.robust_accuracy.percent():<24} {a.attack_success_rate.percent():<24} "
                         f"{a.n_attacked:>6} {a.estimator_label[:22]:<22} {_s(a.steps):>6} {_s(a.restarts):>4} "
                         f"{_s(a.eot):>4} {a.time_s:>6.1f}s")
            if a.meta.get("error"):
                lines.append(f"{'':<34} FAILED on {a.meta.get('not_attacked', '?')} samples, not attacked: "
                             f"{str(a.meta['error'])[:90]}")
        if any(a.scope == "cumulative" for a in self.attacks):
            lines.append("(cascade: each attack runs only on samples still robust; robust acc is cumulative)")
        w = self.worst_case
        lines.append("")
        lines.append(f"Worst case (per sample, all attacks): robust accuracy {w.robust_accuracy.percent()} "
                     f"n={w.robust_accuracy.n}; attack success {w.attack_success_rate.percent()} "
                     f"of {w.attack_success_rate.n} correct"
                     + ("  INCOMPLETE (upper bound)" if not self.complete else ""))
        if any(w.broken_by.values()):
            lines.append("  first broken by: " + ", ".join(f"{k} {v}" for k, v in w.broken_by.items() if v))
        if self.eps_curve:
            lines.append("")
            lines.append("Robustness curve (worst case per eps):")
            for p in self.eps_curve:
                per = "; ".join(f"{k} {v.percent()}" for k, v in p.attacks.items()) if len(p.attacks) > 1 else ""
                lines.append(f"  eps {format_eps(p.eps):<16} {p.robust_accuracy.percent():<24}"
                             + (f" ({per})" if per else ""))
        if self.diagnostics:
            lines.append("")
            lines.append(f"Masking diagnostics: {self.diagnostics_status}")
            for d in self.diagnostics:
                lines.append("  " + d.line())
        notes = [n for n in self.notes if not n.startswith("WARNING")]  # warnings are at the top
        if notes:
            lines.append("")
            lines.extend("note: " + n for n in notes)
        lines.append(f"time {self.timing_s:.1f}s")
        return "\n".join(lines)


def _s(v: Any) -> str:
    return "-" if v is None else str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def failure_reason(f: dict, n: int) -> str:
    """The sentence for one failed attack run ``f`` (a ``PassOutcome.failures`` entry) on ``n`` samples."""
    eps = format_eps(f["eps"]) if _is_num(f.get("eps")) else "?"
    k = f.get("counted_robust")
    bound = (f"{k} of them are still counted robust, so the robust accuracy may be up to {k}/{n} too high"
             if isinstance(k, int) else "the robust accuracy may be too high")
    return (f"INCOMPLETE: attack {f.get('attack', '?')} at eps={eps} did not attack {f.get('n_not_attacked', '?')} of "
            f"the {f.get('n_scheduled', '?')} samples it was given ({f.get('error') or 'no error recorded'}); what it "
            f"broke in its finished batches counts; {bound}")


def incomplete_from_dict(d: dict) -> list[dict]:
    """The ``incomplete`` list of a result dict. Older results have no such key: an attack
    record with an ``error`` (that attack broke nothing and was counted as such) makes them
    incomplete, and so does ``complete: false`` without reasons."""
    listed = [dict(f) for f in d.get("incomplete") or [] if isinstance(f, dict)]
    if listed:
        return listed
    eps = (d.get("threat_model") or {}).get("eps")
    for a in d.get("attacks") or []:
        meta = a.get("meta") or {}
        if meta.get("error"):
            f = {"attack": a.get("id", "?"), "eps": eps, "error": meta["error"],
                 "n_not_attacked": meta.get("not_attacked", a.get("n_attacked", "?")), "not_attacked": None,
                 "n_scheduled": a.get("n_attacked", "?") if "not_attacked" not in meta else "?"}
            # before the fix a crashed attack was recorded as breaking nothing (its finished
            # batches were thrown away), so failure_reason's "what it broke counts" would be wrong
            f["reason"] = f"attack {f['attack']} failed ({f['error']}); it broke nothing it was meant to attack"
            listed.append(f)
    if not listed and d.get("complete") is False:
        listed.append({"attack": "?", "eps": eps, "error": None, "reason": "INCOMPLETE: the result says it is "
                       "incomplete without giving the reason"})
    return listed


# ----------------------------------------------------------------------------- files
def result_path(checkpoint: "str | Path", name: str, budget: str) -> Path:
    """``<ckpt stem>.attack-<suite or attack>-<budget>.json`` next to the checkpoint."""
    p = Path(checkpoint)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return p.with_name(f"{p.stem}.attack-{safe}-{budget}.json")


def write_json_atomic(data: Any, path: "str | Path") -> Path:
    """Serialize ``data`` to ``path`` atomically (:func:`snnrobust.io.atomic_open`): on any
    failure the temporary file is removed and an existing ``path`` is left exactly as it was."""
    path = Path(path)
    if not path.parent.exists():
        raise ConfigError(f"cannot write results to {path}: folder {path.parent} does not exist")
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")
    return path


def write_result(result: "EvaluationResult | dict", path: "str | Path") -> Path:
    data = result.to_dict() if isinstance(result, EvaluationResult) else json_ready(result)
    try:
        return write_json_atomic(data, path)
    except OSError as e:
        raise ConfigError(f"cannot write results to {path}: {e.strerror or e}; choose another --out") from e


def read_result(path: "str | Path") -> EvaluationResult:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"results file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"results file {path} is unreadable or not JSON ({e}); re-run the attack") from None
    if not isinstance(d, dict):
        raise ConfigError(f"results file {path} is not a snnrobust evaluation result")
    try:
        return EvaluationResult.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"results file {path} is malformed ({e}); re-run the attack") from None
