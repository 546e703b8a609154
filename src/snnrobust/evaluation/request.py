"""What an evaluation was asked to do, validated, and what it will therefore run.

:class:`EvaluationRequest` holds :func:`~snnrobust.evaluation.engine.evaluate`'s keywords as
given. Building one validates every value (a bad one is the same one-line
:class:`~snnrobust.errors.ConfigError` the evaluation gives) and decides, in this one place,
everything that depends on the suite and budget but not on the model or the data; the
decisions are in ``request.plan`` (:class:`EvaluationPlan`):

- the threat model: the caller's, else the suite's protocol eps (seed suites), else L-inf
  8/255; ``replicate_seed_code`` switches it to the seed code's spike-tensor / BN-train one;
- the budget: the preset with ``steps``/``restarts``/``eot`` applied (suites) or ``eot`` only
  (single attacks, whose steps/restarts go to the options the attack class declares); a
  suite that fixes a paper's protocol refuses them (:meth:`Suite.refuse_settings`);
- the eps curve (the caller's, else the suite's default), whether the masking diagnostics run
  (the caller's choice, else the suite's), whether the budget cascades, the budget's notes;
- a single attack's options (budget and transfer sources applied, validated by building it);
- the source ANN of a converted or hybrid SNN (``source_ann``: a module, or the checkpoint's
  ``ann_source`` mapping, built here), which the ``source-ann`` estimator needs.

Nothing here runs a model: what does (the clean pass, the attacks) is in
:mod:`snnrobust.evaluation.engine`, which takes the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Optional

from torch import nn

from ..errors import ConfigError, SnnRobustError
from ..estimators import get_estimator
from ..estimators.source_ann import NO_SOURCE, NO_SPIKES, SourceANN, ann_from_source, source_label
from ..attacks.registry import attack_class
from .suites import Budget, Suite, get_budget, get_suite
from .threat import ThreatModel, parse_eps
from .victim import _count as count_passes  # the Victim's own check of vote/eot counts

#: Suites whose attacks the budget sizes, so every setting below the standard is named in the
#: result's notes. The seed suites fix their own settings; only overrides are named for them.
BUDGET_SIZED_SUITES = ("reliable", "standard")
#: The replication option seed 000's code adds beyond the threat model (labelled in the result).
SEED_CODE_ABORT = "PGD aborts when the input-gradient L2 norm < 1e-6 (Luu et al. 2025's code)"


def transfer_source_list(sources: Any) -> list[tuple[str, nn.Module]]:
    """Accept None, a module, a list of modules or (label, module) pairs, or {label: module};
    return [(label, module)] (unlabelled modules become ``source0``, ``source1``, ...)."""
    if sources is None:
        return []
    if isinstance(sources, nn.Module):
        sources = [sources]
    if isinstance(sources, dict):
        items = list(sources.items())
    else:
        items = []
        for i, s in enumerate(sources):
            if isinstance(s, (tuple, list)) and len(s) == 2:
                items.append((str(s[0]), s[1]))
            else:
                items.append((f"source{i}", s))
    for label, m in items:
        if not isinstance(m, nn.Module):
            raise ConfigError(f"transfer source {label} is a {type(m).__name__}, not a torch nn.Module")
    return [(str(k), v) for k, v in items]


@dataclass(frozen=True)
class EvaluationPlan:
    """The decisions of a validated :class:`EvaluationRequest` (see the module docstring)."""

    suite: Optional[Suite]                 # None: a single attack
    attack: Optional[str]                  # the single attack's registry name (None for suites)
    attack_options: dict                   # its options, budget and sources applied ({} for suites)
    attack_kind: Optional[str]             # its declared kind (None for suites)
    threat: ThreatModel
    budget: Budget                         # with the overrides applied
    estimators: Optional[list[str]]        # the caller's estimator specs (replace the suite's), or None
    eot: Optional[int]                     # the caller's EOT (None: the budget's for stochastic models)
    vote: Optional[int]                    # forward passes per prediction (None: the Victim's default)
    batch_size: int
    eps_curve: tuple[float, ...]           # sorted, distinct; () for no curve
    transfer_sources: list                 # [(label, nn.Module)]
    diagnostics: bool
    cascade: bool                          # samples already broken are not attacked again
    replicate_seed_code: bool
    replication: tuple[str, ...]           # non-standard options in force, labelled in the result
    budget_notes: tuple[str, ...]          # the budget's shortfalls / overrides, for the result's notes
    seed: int
    progress: bool
    device: Any
    model_info: Optional[dict]
    data_info: Optional[dict]
    source_ann: Optional[nn.Module] = None   # a converted/hybrid SNN's source ANN (estimator source-ann)
    source_ann_label: Optional[str] = None   # how results name it (its checkpoint and hash)

    @property
    def name(self) -> str:
        """The suite's name or the attack's (for logs)."""
        return self.suite.name if self.suite is not None else str(self.attack)


@dataclass(frozen=True)
class EvaluationRequest:
    """:func:`~snnrobust.evaluation.engine.evaluate`'s keywords as given; validated and
    resolved into ``plan`` when built (``EvaluationRequest(suite="reliable")`` raises the
    one-line ConfigError of any bad value, without a model)."""

    suite: "str | Suite | None" = None
    attack: Optional[str] = None
    attack_options: Optional[dict] = None
    threat: "ThreatModel | dict | None" = None   # a dict without "eps" takes the suite's protocol eps
    budget: "str | Budget" = "quick"
    estimators: Optional[Iterable[Any]] = None
    eot: Optional[int] = None
    vote: Optional[int] = None
    steps: Optional[int] = None
    restarts: Optional[int] = None
    batch_size: int = 256
    eps_sweep: Optional[Iterable[Any]] = None
    transfer_sources: Any = None
    progress: bool = True
    seed: int = 0
    diagnostics: Optional[bool] = None
    replicate_seed_code: bool = False
    model_info: Optional[dict] = None
    data_info: Optional[dict] = None
    device: Any = None
    source_ann: Any = None   # the source ANN of a converted/hybrid SNN: an nn.Module or a checkpoint's ann_source
    plan: EvaluationPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # iterables given once (generators) are read here, once, and kept as lists
        for name in ("estimators", "eps_sweep"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, (list, tuple, str)):
                object.__setattr__(self, name, list(v))
        object.__setattr__(self, "plan", self._resolve())

    def _resolve(self) -> EvaluationPlan:
        # the order of the checks is the order the evaluation always had (the first error wins)
        if (self.suite is None) == (self.attack is None):
            raise ConfigError("give exactly one of a suite (--suite NAME) or an attack (--attack NAME)")
        bs = self.batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ConfigError(f"batch size must be a positive integer, got {bs!r}")
        suite = get_suite(self.suite) if self.suite is not None else None
        budget = get_budget(self.budget)
        if suite is not None and suite.fixed_protocol:
            suite.refuse_settings(steps=self.steps, restarts=self.restarts, eot=self.eot,
                                  estimators=self.estimators, budget=budget)
        elif suite is not None:
            budget = budget.override(steps=self.steps, restarts=self.restarts, eot=self.eot)
        else:
            budget = budget.override(eot=self.eot)  # steps/restarts go to the attack's own options
        threat = self._threat(suite)
        replication: list[str] = []
        if self.replicate_seed_code:
            if suite is None:
                raise ConfigError("--replicate-seed-code applies to suite seed-luu2025 only")
            suite.refuse_settings(replicate_seed_code=True)
            threat = replace(threat, perturb="spikes", bn_mode="train")
            replication.append(SEED_CODE_ABORT)
        estimators = None
        if self.estimators:
            estimators = [e if isinstance(e, str) else get_estimator(e).spec() for e in self.estimators]
            for e in estimators:
                get_estimator(e)  # one-line error on a bad spec
        source_ann, source_label = self._source_ann(estimators, threat)
        vote = None if self.vote is None else count_passes("vote", self.vote, 1)
        sources = transfer_source_list(self.transfer_sources)
        sweep = self.eps_sweep if self.eps_sweep is not None else (suite.eps_sweep or ()) if suite else ()
        eps_curve = tuple(sorted({parse_eps(e) for e in sweep}))
        attack = options = kind = None
        if suite is None:
            attack, options, kind = self._single_attack(sources, estimators)
        if suite is None:
            notes: list[str] = []
        elif suite.name in BUDGET_SIZED_SUITES:
            notes = budget.notes()
        else:  # a seed suite's own settings are the protocol; only overrides are worth a note
            notes = [n for n in budget.notes() if n.startswith("budget overridden")] if budget.overrides else []
        return EvaluationPlan(
            suite=suite, attack=attack, attack_options=options or {}, attack_kind=kind, threat=threat,
            budget=budget, estimators=estimators, eot=self.eot, vote=vote, batch_size=bs, eps_curve=eps_curve,
            transfer_sources=sources,
            diagnostics=self.diagnostics if self.diagnostics is not None else bool(suite and suite.diagnostics),
            cascade=suite.cascades(budget) if suite is not None else False,
            replicate_seed_code=bool(self.replicate_seed_code),
            replication=tuple(threat.replication_options + replication), budget_notes=tuple(notes),
            seed=self.seed, progress=self.progress, device=self.device, model_info=self.model_info,
            data_info=self.data_info, source_ann=source_ann, source_ann_label=source_label)

    def _source_ann(self, estimators: Optional[list[str]], threat: ThreatModel) -> tuple[Optional[nn.Module],
                                                                                         Optional[str]]:
        """(the source ANN as a module, its label), both None without one; built from a
        checkpoint's ``ann_source`` mapping when given one. The caller's ``source-ann``
        estimator needs it, and pixels to perturb (one-line ConfigError otherwise)."""
        source, label = self.source_ann, None
        if isinstance(source, dict):
            source, label = ann_from_source(source), source_label(source)
        elif source is not None and not isinstance(source, nn.Module):
            raise ConfigError(f"source_ann must be the source ANN (an nn.Module) or a checkpoint's ann_source "
                              f"mapping, got {type(source).__name__}")
        elif source is not None:
            label = source_label(source)
        if any(isinstance(get_estimator(e), SourceANN) for e in estimators or ()):
            if source is None:
                raise ConfigError(NO_SOURCE)
            if threat.perturb == "spikes":
                raise ConfigError(NO_SPIKES)
        return source, label

    def _threat(self, suite: Optional[Suite]) -> ThreatModel:
        """The caller's threat model; where it gives no eps (None, or a mapping without one),
        the suite's protocol eps, else ThreatModel's default (L-inf 8/255)."""
        threat = self.threat
        if threat is None:
            threat = {}
        if isinstance(threat, dict) and "eps" not in threat and suite is not None and suite.eps is not None:
            threat = {**threat, "eps": suite.eps}
        return ThreatModel.from_dict(threat)

    def _single_attack(self, sources: list, estimators: Optional[list[str]]) -> tuple[str, dict, str]:
        """(registry name, options, kind) of the single attack: ``steps``/``restarts`` set on
        the options its class declares (a transfer attack's: its inner attack's), the sources
        added to a transfer attack, and the options validated by building it once."""
        cls = attack_class(self.attack)
        opts = cls.with_budget(dict(self.attack_options or {}), self.steps, self.restarts)
        if cls.kind == "transfer":
            if not sources:
                raise ConfigError("attack transfer needs source models: give --transfer-from CKPT or "
                                  "--ann-twin-transfer")
            opts.setdefault("sources", [m for _, m in sources])
        elif cls.kind in ("score", "noise") and estimators:
            raise ConfigError(f"attack {cls.name} uses no gradients, so --estimator does not apply")
        try:
            cls(**opts)  # a bad option is its one-line ConfigError here, before any model runs
        except SnnRobustError:
            raise
        except (RuntimeError, ValueError, IndexError, MemoryError):
            pass  # not a user error: the run records the attack as failed (result incomplete)
        return cls.name, opts, cls.kind
