"""Named attack suites and budget presets, as data.

A :class:`Suite` expands, for one model and one :class:`Budget`, into an ordered list of
:class:`AttackSpec` — (attack name, options, gradient estimator, EOT samples). The
evaluator (:mod:`snnrobust.evaluation.engine`) runs the list; nothing here touches tensors.

Suites (``SUITES``; ``snnrobust attack --suite NAME``):

- ``seed-luu2025``: seed 000's protocol exactly. FGSM eps = 6/255; PGD eps = 6/255, step
  0.01, 7 iterations, uniform random start, 1 restart; exact BPTT with the training
  surrogate. Pixel-space by default; ``replicate_seed_code`` switches on the seed code's
  three inflating choices (perturb the spike tensor, BN in train mode while crafting, PGD
  aborts at input-gradient norm < 1e-6), labelled in every output.
- ``seed-sharmin2020``: seed 001's protocol. FGSM eps = 8/255; PGD eps = 8/255, step 2/255,
  7 iterations, random start; straight-through through the Poisson encoder (the encoder's
  own backward), ONE stochastic sample per gradient (eot = 1); eps curve 2,4,6,8,16/255.
  White-box on the target, plus its black-box half when transfer sources are given: the same
  FGSM and PGD crafted on each source (an independently trained model) and scored on the
  target (kind "transfer"). Without sources the result says it is white-box only.
- ``standard``: AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square, each on the samples
  still robust; Square is snnrobust's, which draws its windows per sample, ``square-aa`` the
  official one), or its "rand" version (APGD-CE, APGD-DLR with EOT) for stochastic models.
- ``reliable``: per-sample worst case over gradient estimators x surrogate widths x
  {APGD-CE, APGD-T, SA-PGD, FAB-T}, then Square and transfer (when sources are given); samples
  already broken are not attacked again (unless the budget turns the cascade off); masking
  diagnostics run with it. A converted or hybrid SNN evaluated with its source ANN also gets
  the ``source-ann`` estimator (BPDA through that ANN).

Budgets (``BUDGETS``): ``quick`` (a CPU demo, below the standard in several settings, each
named in every result), ``thorough`` (GPU) and ``exhaustive`` (the reference that quick and
thorough are measured against: every estimator x every attack x every sample, no cascade).
``Budget.override(steps=, restarts=, eot=, ...)`` gives the ``--steps/--restarts/--eot``
variants (and, from Python, cheaper runs of any preset); the overrides are recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import ConfigError
from ..spiking.surrogates import Surrogate

# ----------------------------------------------------------------------------- budgets
# "The standard" of a reliable evaluation, per setting. AutoAttack's standard version (Croce & Hein
# 2020) is what the field reports: 100 iterations, APGD-T and FAB-T over the top 9 target classes,
# Square with 5000 queries, and EOT over 20 samples in its version for randomized models; PGD
# crafted on a transfer source gets the same 100 steps. A budget below any of these is named in
# every result's notes. (Restarts have no separate standard: AutoAttack standard runs each attack
# once, the least any budget can do; thorough and exhaustive add restarts.)
#: Steps below which a result is flagged as under the usual >= 100-step standard.
STANDARD_STEPS = 100
#: Target classes of APGD-T / FAB-T (capped at classes - 1 on models with fewer classes).
STANDARD_TARGET_CLASSES = 9
#: Queries of the Square attack.
STANDARD_SQUARE_QUERIES = 5000
#: Gradient samples per step on stochastic models (AutoAttack's "rand" version).
STANDARD_EOT = 20

#: Integer settings ``Budget.override`` may change (the first three are the CLI's flags).
OVERRIDABLE = ("steps", "restarts", "eot", "target_classes", "square_queries", "transfer_steps", "diag_n",
               "diag_steps", "diag_more_steps", "diag_restarts", "diag_noise_draws")
_TUPLE_FIELDS = ("surrogate_widths", "extra_estimators", "estimator_attacks", "own_attacks")


@dataclass(frozen=True)
class Budget:
    """How much effort a suite spends. Every field is recorded in the result.

    steps / restarts: iterations and restarts of APGD-CE, SA-PGD (APGD-T and FAB-T run once per
        target class, as in AutoAttack), and of PGD when the threat model perturbs spikes,
        where AutoAttack's code cannot run.
    surrogate_widths: multipliers of the model's own surrogate width for BPTT estimators
        (1 = the training surrogate; 4 = four times wider, i.e. sharpness / 4).
    extra_estimators: non-BPTT estimator specs added to the reliable suite.
    estimator_attacks: attacks run under *every* estimator; own_attacks: attacks run only
        under the model's own surrogate (quick keeps the cross product small).
    eot: gradient samples per step for stochastic models (deterministic models use 1).
    target_classes: target classes of APGD-T / FAB-T (capped at classes - 1).
    square_queries: queries of the Square attack.
    transfer_steps: PGD steps crafted on each transfer source.
    diag_n: samples the masking diagnostics use (the first diag_n of the evaluation set).
    diag_steps / diag_more_steps / diag_restarts: PGD budgets the diagnostics compare.
    diag_noise_draws: random draws of the noise baseline.
    cascade: True lets cascade suites (standard, reliable) skip samples an earlier attack
        broke; False runs every attack on every clean-correct sample (the per-sample worst
        case still combines them) so that each attack's own number is measured.
    curve_steps / curve_square_queries: steps and Square queries at the eps-curve points
        other than the main eps (None = steps / square_queries; never more than those). At a
        small eps most samples survive, so every attack runs on most of them and Square spends
        all its queries on each: a curve at full strength costs several main passes. The
        headline number keeps the full budget; the curve's looser points are named in the notes.
    """

    name: str
    steps: int
    restarts: int
    surrogate_widths: tuple[float, ...]
    extra_estimators: tuple[str, ...]
    estimator_attacks: tuple[str, ...]
    own_attacks: tuple[str, ...]
    eot: int
    target_classes: int
    square_queries: int
    transfer_steps: int
    diag_n: int
    diag_steps: int
    diag_more_steps: int
    diag_restarts: int
    diag_noise_draws: int
    description: str = ""
    overrides: tuple[tuple[str, int], ...] = ()
    cascade: bool = True
    curve_steps: Optional[int] = None
    curve_square_queries: Optional[int] = None

    def __post_init__(self) -> None:
        # results read back from JSON hold lists; keep the budget hashable and comparable
        for k in _TUPLE_FIELDS:
            object.__setattr__(self, k, tuple(getattr(self, k)))
        object.__setattr__(self, "overrides", tuple(tuple(kv) for kv in self.overrides))
        for k in OVERRIDABLE:
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"budget {self.name}: {k} must be a positive integer, got {v!r}")
        if not self.surrogate_widths or any(not w > 0 for w in self.surrogate_widths):
            raise ConfigError(f"budget {self.name}: surrogate_widths must be positive numbers")
        for k in ("curve_steps", "curve_square_queries"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"budget {self.name}: {k} must be a positive integer or null, got {v!r}")
        if not isinstance(self.cascade, bool):
            raise ConfigError(f"budget {self.name}: cascade must be true or false, got {self.cascade!r}")

    def override(self, steps: Optional[int] = None, restarts: Optional[int] = None,
                 eot: Optional[int] = None, **more: Optional[int]) -> "Budget":
        """A copy with ``--steps/--restarts/--eot`` (and, from Python, any other integer setting
        in ``OVERRIDABLE``, e.g. ``square_queries=500``) applied (None = keep); recorded in
        ``overrides`` and named in the result's notes."""
        unknown = sorted(set(more) - set(OVERRIDABLE))
        if unknown:
            raise ConfigError(f"budget override: unknown setting(s) {', '.join(unknown)}; "
                              f"choose from {', '.join(OVERRIDABLE)}")
        changes: dict[str, int] = {}
        for key, v in (("steps", steps), ("restarts", restarts), ("eot", eot), *more.items()):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                flag = f"--{key}" if key in ("steps", "restarts", "eot") else f"budget override {key}"
                raise ConfigError(f"{flag} must be a positive integer, got {v!r}")
            changes[key] = v
        if not changes:
            return self
        return dataclasses.replace(self, overrides=tuple(sorted({**dict(self.overrides), **changes}.items())),
                                   **changes)

    def for_curve(self) -> "Budget":
        """The budget the eps-curve points other than the main eps run with (see the class
        docstring): steps and Square queries capped at ``curve_steps`` / ``curve_square_queries``."""
        steps = self.steps if self.curve_steps is None else min(self.steps, self.curve_steps)
        queries = self.square_queries if self.curve_square_queries is None else min(self.square_queries,
                                                                                    self.curve_square_queries)
        if (steps, queries) == (self.steps, self.square_queries):
            return self
        return dataclasses.replace(self, steps=steps, square_queries=queries)

    @property
    def below_standard(self) -> bool:
        """Fewer iterations than the >= 100-step standard (the table's headline flag; the notes
        name every other setting below its standard too, see :meth:`shortfalls`)."""
        return self.steps < STANDARD_STEPS

    def shortfalls(self, stochastic: Optional[bool] = None) -> list[str]:
        """Each setting below the standard of reliable evaluations, as "<value> (standard <s>)".
        ``stochastic``: whether the model is stochastic (EOT applies); None = not known, the EOT
        shortfall is then named as applying to stochastic models."""
        out = []
        if self.steps < STANDARD_STEPS:
            out.append(f"{self.steps} steps per attack (standard >= {STANDARD_STEPS})")
        if self.target_classes < STANDARD_TARGET_CLASSES:
            out.append(f"{self.target_classes} target class{'es' if self.target_classes != 1 else ''} for APGD-T/FAB-T "
                       f"(standard {STANDARD_TARGET_CLASSES}, or classes - 1 if fewer)")
        if self.square_queries < STANDARD_SQUARE_QUERIES:
            out.append(f"{self.square_queries} Square queries (standard >= {STANDARD_SQUARE_QUERIES})")
        curve = self.for_curve()
        if curve.steps < min(self.steps, STANDARD_STEPS):
            out.append(f"{curve.steps} steps per attack at the eps-curve points other than the main eps "
                       f"(standard >= {STANDARD_STEPS})")
        if curve.square_queries < min(self.square_queries, STANDARD_SQUARE_QUERIES):
            out.append(f"{curve.square_queries} Square queries at the eps-curve points other than the main eps "
                       f"(standard >= {STANDARD_SQUARE_QUERIES})")
        if self.eot < STANDARD_EOT and stochastic is not False:
            where = "" if stochastic else " on stochastic models"
            out.append(f"{self.eot} EOT samples per gradient{where} (standard >= {STANDARD_EOT})")
        if self.transfer_steps < STANDARD_STEPS:
            out.append(f"{self.transfer_steps} PGD steps on transfer sources (standard >= {STANDARD_STEPS})")
        if self.own_attacks:
            out.append(f"{'/'.join(self.own_attacks)} under the model's own surrogate only "
                       "(standard: every attack under every estimator of the reliable suite)")
        return out

    def notes(self, stochastic: Optional[bool] = None) -> list[str]:
        """Lines for the result's notes: the settings below the standard and the overrides."""
        out = []
        short = self.shortfalls(stochastic)
        if short:
            out.append(f"budget '{self.name}' is below the standard of reliable evaluations in: " + "; ".join(short)
                       + ": treat its robust accuracy as an upper bound and confirm with --budget thorough")
        if self.overrides:
            out.append("budget overridden: " + ", ".join(f"{k}={v}" for k, v in self.overrides))
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in _TUPLE_FIELDS:
            d[k] = list(getattr(self, k))
        d["overrides"] = dict(self.overrides)
        d["below_standard"] = self.below_standard
        return d


_THOROUGH_ESTIMATORS = dict(
    surrogate_widths=(0.5, 1.0, 2.0, 4.0),
    extra_estimators=("ste", "bptr", "rga", "hart:0.5", "hart:1.0", "hart:2.0", "pdsg", "assg:0.4"),
)

BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in [
        Budget(
            name="quick",
            description="CPU: 50-step APGD-CE under the own surrogate, a 4x wider one, RGA and BPTR, then "
                        "APGD-T (1 target), SA-PGD and FAB-T (1 target) with the own surrogate, each on the samples "
                        "still robust, then a full 5000-query Square; the other eps-curve points get 10 steps and 100 "
                        "queries; "
                        "diagnostics on 100 samples (below the standard: every such setting is named in the result)",
            steps=50, restarts=1, surrogate_widths=(1.0, 4.0), extra_estimators=("rga", "bptr"),
            estimator_attacks=("apgd-ce",), own_attacks=("apgd-t", "sapgd", "fab-t"),
            eot=4, target_classes=1, square_queries=5000, transfer_steps=10,
            diag_n=100, diag_steps=10, diag_more_steps=30, diag_restarts=2, diag_noise_draws=5,
            curve_steps=10, curve_square_queries=100,
        ),
        Budget(
            name="thorough",
            description="GPU: every estimator, 4 surrogate widths, 100-step APGD-CE/APGD-T/SA-PGD/FAB-T with "
                        "restarts (9 targets) under every estimator, 5000-query Square, EOT 20",
            steps=100, restarts=3, **_THOROUGH_ESTIMATORS,
            estimator_attacks=("apgd-ce", "apgd-t", "sapgd", "fab-t"), own_attacks=(),
            eot=20, target_classes=9, square_queries=5000, transfer_steps=100,
            diag_n=1000, diag_steps=50, diag_more_steps=200, diag_restarts=5, diag_noise_draws=20,
        ),
        Budget(
            name="exhaustive",
            description="the reference, not for daily use: thorough's estimators x APGD-CE/APGD-T/SA-PGD/FAB-T, "
                        "each on every clean-correct sample (no cascade), 100 steps x 5 restarts (9 targets), "
                        "EOT 20, 10000-query Square; the per-sample worst case combines them",
            steps=100, restarts=5, **_THOROUGH_ESTIMATORS,
            estimator_attacks=("apgd-ce", "apgd-t", "sapgd", "fab-t"), own_attacks=(),
            eot=20, target_classes=9, square_queries=10000, transfer_steps=100,
            diag_n=1000, diag_steps=50, diag_more_steps=200, diag_restarts=5, diag_noise_draws=20,
            cascade=False,
        ),
    ]
}


def get_budget(name: "str | Budget") -> Budget:
    if isinstance(name, Budget):
        return name
    if name not in BUDGETS:
        raise ConfigError(f"unknown budget '{name}'; choose one of: {', '.join(BUDGETS)}")
    return BUDGETS[name]


# ----------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite.

    kind: "single-step" | "gradient" | "score" (query-only black box) | "transfer";
    estimator: an estimator spec (None for attacks that take no gradient of the target);
    eot: gradient samples per step (None = the Victim's default).
    """

    attack: str
    options: dict = field(default_factory=dict)
    estimator: Optional[str] = None
    eot: Optional[int] = None
    kind: str = "gradient"
    id: str = ""


@dataclass
class SuiteContext:
    """What a suite needs to know about the model and the run to expand itself."""

    budget: Budget
    threat: Any                           # ThreatModel
    own_surrogate: Optional[Surrogate]    # e.g. Surrogate("atan", 2) (None: no spiking neurons, or mixed)
    has_spiking: bool
    stochastic: bool
    num_classes: int
    transfer_sources: list = field(default_factory=list)   # [(label, nn.Module)]
    estimators: Optional[list[str]] = None                  # user's --estimator list (replaces the suite's)
    eot: Optional[int] = None                               # user's --eot
    replicate_seed_code: bool = False
    notes: list[str] = field(default_factory=list)          # suites append what they changed and why
    source_ann: Optional[str] = None                        # label of the model's source ANN (converted/hybrid)
    # estimator name -> why it cannot apply to this model's neurons (a wrapped foreign model's
    # ``estimator_limits``); the reliable suite leaves those out and says so
    not_applicable: dict = field(default_factory=dict)
    # the model has a phase encoder whose straight-through gradient the attacker may smooth
    # (estimator ``encoder-smooth``); the reliable suite adds it at eps / 4
    smooth_encoder: bool = False

    def __post_init__(self) -> None:
        # the edge: a spec string or dict ("atan:2") is parsed here once; the suites use the object
        if self.own_surrogate is not None and not isinstance(self.own_surrogate, Surrogate):
            self.own_surrogate = Surrogate.parse(self.own_surrogate)

    def gradient_eot(self) -> Optional[int]:
        """EOT for white-box attacks: the user's, else the budget's for stochastic models, else 1."""
        if self.eot is not None:
            return self.eot
        return self.budget.eot if self.stochastic else 1


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    build: Callable[[SuiteContext], list[AttackSpec]]
    cascade: bool                    # True: samples already broken are not attacked again
    eps: Optional[float] = None      # the protocol's eps (used when the caller gives no threat model)
    eps_sweep: Optional[tuple[float, ...]] = None   # default curve
    fixed_protocol: bool = False     # seed protocols: --steps/--restarts/--eot/--estimator refused
    diagnostics: bool = False        # run the masking diagnostics by default
    replication_options: bool = False  # accepts replicate_seed_code

    def cascades(self, budget: Budget) -> bool:
        """Whether samples already broken are skipped: the suite's way, unless the budget turns
        the cascade off (exhaustive: every attack on every clean-correct sample)."""
        return self.cascade and budget.cascade

    def refuse_settings(self, *, steps: Optional[int] = None, restarts: Optional[int] = None,
                        eot: Optional[int] = None, estimators: Any = None, budget: Optional[Budget] = None,
                        replicate_seed_code: bool = False) -> None:
        """The one rule of which caller settings this suite accepts: a suite that fixes a
        paper's protocol refuses ``--steps/--restarts/--eot/--estimator`` and a budget carrying
        overrides; only a suite with ``replication_options`` takes ``replicate_seed_code``.
        Raises the one-line ConfigError; used by the evaluation request and by :func:`expand`."""
        if self.fixed_protocol:
            given = [flag for flag, v in (("--steps", steps), ("--restarts", restarts), ("--eot", eot),
                                          ("--estimator", estimators)) if v]
            if budget is not None and budget.overrides:
                given.append("the budget's overrides (" + ", ".join(f"{k}={v}" for k, v in budget.overrides) + ")")
            if given:
                raise ConfigError(f"suite {self.name} reproduces a paper's protocol and fixes its settings; "
                                  f"drop {', '.join(given)} or use --attack pgd with your own settings")
        if replicate_seed_code and not self.replication_options:
            raise ConfigError("--replicate-seed-code applies to suite seed-luu2025 only")


SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    SUITES[suite.name] = suite
    return suite


def get_suite(name: "str | Suite") -> Suite:
    if isinstance(name, Suite):
        return name
    if name not in SUITES:
        raise ConfigError(f"unknown suite '{name}'; choose one of: {', '.join(SUITES)}")
    return SUITES[name]


def list_suites() -> dict[str, str]:
    return {name: s.description for name, s in SUITES.items()}


# ----------------------------------------------------------------------------- helpers
#: the reliable suite's encoder-smooth window: eps / 4 (the best of 0.01, 0.025, 0.05 at eps 0.1 on a
#: fast-AT phase-coded SEW-ResNet; see snnrobust.estimators.encoder_smooth)
ENCODER_SMOOTH_EPS_FRACTION = 4.0


def own_estimator(ctx: SuiteContext) -> str:
    """The model's own training surrogate as an explicit BPTT spec (so labels show it)."""
    return f"bptt:{ctx.own_surrogate.spec()}" if ctx.own_surrogate else "bptt"


def reliable_estimators(ctx: SuiteContext) -> list[str]:
    """The estimator list of the reliable suite: the user's, or the budget's widths of the
    model's own surrogate plus its extra estimators, plus ``source-ann`` for a converted or
    hybrid SNN with its source ANN. A model without spiking neurons has one gradient, so one
    estimator."""
    if ctx.estimators:
        return _dedupe(list(ctx.estimators))
    if not ctx.has_spiking:
        ctx.notes.append("the model has no spiking neurons: every gradient estimator is the same exact gradient, "
                         "so the reliable suite uses one")
        return ["bptt"]
    out: list[str] = []
    for w in ctx.budget.surrogate_widths:
        if ctx.own_surrogate is None:
            if w == 1.0:
                out.append("bptt")
            continue
        if w == 1.0:
            out.append(own_estimator(ctx))
        elif ctx.own_surrogate.has_width:  # straight-through has no width to sweep
            out.append(f"bptt:{ctx.own_surrogate.widened(w).spec()}")
    if ctx.own_surrogate is None:
        ctx.notes.append("the model's neurons use different surrogates: surrogate widths are not swept")
    for spec in ctx.budget.extra_estimators:
        why = ctx.not_applicable.get(spec.split(":")[0])
        if why:
            ctx.notes.append(f"estimator {spec} left out: {why}")
        else:
            out.append(spec)
    if ctx.smooth_encoder:
        if ctx.threat.perturb == "spikes":
            ctx.notes.append("encoder-smooth left out: this threat model perturbs spikes, after the encoder")
        else:
            width = ctx.threat.eps / ENCODER_SMOOTH_EPS_FRACTION
            out.append(f"encoder-smooth:{width:.6g}")
            ctx.notes.append(f"estimator encoder-smooth:{width:.6g} added: the phase encoder's straight-through "
                             f"gradient credits bits no eps-{ctx.threat.eps:.4g} perturbation can flip; this one "
                             f"averages the code's slope over +-{width:.4g} pixels")
    if ctx.source_ann:
        # a converted or hybrid SNN is attacked the way such models are: BPDA through the ANN it came from
        if ctx.threat.perturb == "spikes":
            ctx.notes.append("source-ann left out: the source ANN reads pixels, and this threat model perturbs spikes")
        else:
            out.append("source-ann")
            ctx.notes.append(f"estimator source-ann added: this model is a converted or hybrid SNN with "
                             f"{ctx.source_ann}; BPDA, forward through the SNN, input gradient through the ANN")
    return _dedupe(out)


def _dedupe(items: list[str]) -> list[str]:
    seen, out = set(), []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _gradient_attack(name: str, ctx: SuiteContext, steps: int, restarts: int) -> tuple[str, dict]:
    """Options of a white-box iterative attack at this budget. AutoAttack's code perturbs
    pixels only, so with ``perturb="spikes"`` APGD is replaced by our PGD (same steps)."""
    b = ctx.budget
    if ctx.threat.perturb == "spikes" and name.startswith("apgd"):
        return "pgd", {"steps": steps, "restarts": restarts, "random_start": True,
                       "loss": "ce" if name == "apgd-ce" else "dlr" if ctx.num_classes >= 3 else "cw"}
    if name == "apgd-ce":
        return name, {"n_iter": steps, "n_restarts": restarts}
    if name in ("apgd-t", "fab-t"):
        # targeted attacks restart once per target class (AutoAttack's convention)
        return name, {"n_iter": steps, "n_restarts": 1, "n_target_classes": min(b.target_classes, ctx.num_classes - 1)}
    if name == "sapgd":
        return name, {"steps": steps, "restarts": restarts}
    if name == "pgd":
        return name, {"steps": steps, "restarts": restarts, "random_start": True}
    raise ConfigError(f"suite: '{name}' is not an iterative white-box attack the suites know")


def _replaced_id(name: str, attack: str, opts: dict, est: str) -> str:
    """Default id when the attack runs as named; ``pgd-dlr(for apgd-t)/est`` when PGD stands in."""
    if attack == name:
        return ""
    return f"{attack}-{opts.get('loss', 'ce')}(for {name})/{est}"


def _usable(name: str, ctx: SuiteContext) -> bool:
    if name == "apgd-t" and ctx.num_classes < 4 and ctx.threat.perturb != "spikes":
        ctx.notes.append(f"apgd-t skipped: it needs >= 4 classes, the model has {ctx.num_classes}")
        return False
    if name == "fab-t" and ctx.threat.perturb == "spikes":
        # FAB-T is a minimum-norm search in pixel space (official code only); PGD already
        # stands in for the APGD attacks there, a second PGD would add nothing new
        ctx.notes.append("fab-t skipped: AutoAttack's FAB-T perturbs pixels only (perturb=spikes)")
        return False
    return True


def _transfer_spec(ctx: SuiteContext, steps: int) -> list[AttackSpec]:
    if not ctx.transfer_sources:
        return []
    labels = [label for label, _ in ctx.transfer_sources]
    modules = [m for _, m in ctx.transfer_sources]
    # stochastic sources get the budget's EOT (or the user's), as white-box attacks do
    eot = ctx.eot if ctx.eot is not None else ctx.budget.eot
    return [AttackSpec("transfer", {"sources": modules, "inner": "pgd", "source_eot": eot,
                                    "inner_options": {"steps": steps, "random_start": True, "restarts": 1}},
                       estimator=None, eot=None, kind="transfer", id=f"transfer[{','.join(labels)}]")]


# ----------------------------------------------------------------------------- the suites
def _luu2025(ctx: SuiteContext) -> list[AttackSpec]:
    est = own_estimator(ctx)
    pgd = {"steps": 7, "step_size": 0.01, "random_start": True, "restarts": 1, "loss": "ce"}
    if ctx.replicate_seed_code:
        pgd["abort_grad_norm"] = 1e-6
    eot = ctx.gradient_eot()
    return [AttackSpec("fgsm", {"loss": "ce"}, est, eot, "single-step"),
            AttackSpec("pgd", pgd, est, eot, "gradient")]


#: Seed 001's PGD: 7 iterations of 2/255 from a uniform random start (eps from the threat model).
SHARMIN_PGD = {"steps": 7, "step_size": 2 / 255, "random_start": True, "restarts": 1, "loss": "ce"}


def _sharmin2020(ctx: SuiteContext) -> list[AttackSpec]:
    est = own_estimator(ctx)
    # one Poisson sample per gradient step, as the paper's code: eot = 1 by protocol
    specs = [AttackSpec("fgsm", {"loss": "ce"}, est, 1, "single-step"),
             AttackSpec("pgd", dict(SHARMIN_PGD), est, 1, "gradient")]
    if not ctx.transfer_sources:
        ctx.notes.append("seed-sharmin2020 ran WHITE-BOX ONLY: no transfer source was given, so Sharmin et al. "
                         "2020's black-box half (FGSM and PGD-7 crafted on an independently trained model of the "
                         "same type, scored on this one) did not run; give --transfer-from CKPT to add it")
        return specs
    # The black-box half: the same two attacks, crafted on each source with the source's own
    # training surrogate and one stochastic sample per step, scored on the target. One spec per
    # source and attack, so each (source, attack) pair has its own standalone number.
    for label, module in ctx.transfer_sources:
        for inner, opts, kind_label in (("fgsm", {"loss": "ce"}, "fgsm"), ("pgd", dict(SHARMIN_PGD), "pgd")):
            specs.append(AttackSpec("transfer", {"sources": [module], "inner": inner, "inner_options": opts,
                                                 "source_eot": 1},
                                    estimator=None, eot=None, kind="transfer", id=f"transfer-{kind_label}[{label}]"))
    labels = ", ".join(label for label, _ in ctx.transfer_sources)
    ctx.notes.append(f"seed-sharmin2020 black-box half: FGSM and PGD-7 crafted on {labels} (each source's own "
                     "surrogate, one stochastic sample per step) and scored on this model, records of kind "
                     "'transfer'; the worst case combines white-box and black-box per sample")
    return specs


def _standard(ctx: SuiteContext) -> list[AttackSpec]:
    b = ctx.budget
    est = ctx.estimators[0] if ctx.estimators else own_estimator(ctx)
    eot = ctx.gradient_eot()
    if ctx.threat.perturb == "spikes":
        raise ConfigError("suite standard runs AutoAttack, which perturbs pixels only; use --perturb pixels "
                          "(or suite seed-luu2025 for the spike-tensor replication)")
    if ctx.stochastic:
        # AutoAttack's "rand" version: APGD-CE and APGD-DLR with EOT, 1 restart each
        ctx.notes.append(f"stochastic model: AutoAttack rand version (APGD-CE, APGD-DLR) with EOT {eot}")
        specs = [AttackSpec("apgd-ce", {"n_iter": b.steps, "n_restarts": 1, "eot_iter": eot}, est, eot)]
        specs.append(_apgd_dlr(ctx, est, eot))
        return specs
    specs = [AttackSpec("apgd-ce", {"n_iter": b.steps, "n_restarts": 1}, est, eot)]
    if _usable("apgd-t", ctx):
        specs.append(AttackSpec("apgd-t", {"n_iter": b.steps, "n_restarts": 1,
                                           "n_target_classes": min(b.target_classes, ctx.num_classes - 1)}, est, eot))
    specs.append(AttackSpec("fab-t", {"n_iter": b.steps, "n_restarts": 1,
                                      "n_target_classes": min(b.target_classes, ctx.num_classes - 1)}, est, eot))
    specs.append(AttackSpec("square", {"n_queries": b.square_queries}, None, eot, "score"))
    return specs


def _apgd_dlr(ctx: SuiteContext, est: str, eot: int) -> AttackSpec:
    """APGD with the (untargeted) DLR loss. pyautoattack's APGD-DLR is used when the attack
    registry offers it; otherwise our PGD with the DLR loss at the same budget stands in (noted)."""
    from ..attacks.registry import ATTACKS, attack_options

    b = ctx.budget
    if "apgd-dlr" in ATTACKS:
        return AttackSpec("apgd-dlr", {"n_iter": b.steps, "n_restarts": 1, "eot_iter": eot}, est, eot)
    if "loss" in attack_options("apgd-ce"):
        return AttackSpec("apgd-ce", {"n_iter": b.steps, "n_restarts": 1, "eot_iter": eot, "loss": "dlr"}, est, eot,
                          id=f"apgd-dlr/{est}")
    loss = "dlr" if ctx.num_classes >= 3 else "cw"
    ctx.notes.append(f"APGD-DLR is not in the attack registry: PGD with the {loss} loss ({b.steps} steps) stands in")
    return AttackSpec("pgd", {"steps": b.steps, "restarts": 1, "random_start": True, "loss": loss}, est, eot)


#: the gradient attack of each event-domain threat model (their baseline is ``noise``)
EVENT_ATTACKS = {"l0": "eventflip", "retime": "retime"}


def _reliable_events(ctx: SuiteContext, ests: list[str], eot: Optional[int]) -> list[AttackSpec]:
    """The reliable suite under an event-domain threat model (L0 flips, retiming): the threat
    model's gradient attack under every estimator (restarts from random valid points), then
    random valid points as the query-only baseline, with as many draws as Square's queries
    allow (at most 1,000: each draw is a full forward pass)."""
    b = ctx.budget
    attack = EVENT_ATTACKS[ctx.threat.norm]
    specs = [AttackSpec(attack, {"steps": b.steps, "restarts": b.restarts, "random_start": b.restarts > 1},
                        est, eot, "gradient") for est in ests]
    draws = max(1, min(b.square_queries // 5, 1000))
    specs.append(AttackSpec("noise", {"draws": draws}, None, eot, "noise"))
    ctx.notes.append(f"{ctx.threat.norm} threat model on event frames: {attack} under every estimator, then "
                     f"{draws} random valid points (noise) per sample; APGD, FAB-T, SA-PGD and Square search "
                     f"L-inf/L2 balls only and are left out")
    return specs


def _reliable(ctx: SuiteContext) -> list[AttackSpec]:
    b = ctx.budget
    ests = reliable_estimators(ctx)
    eot = ctx.gradient_eot()
    if ctx.threat.norm in EVENT_ATTACKS:
        return _reliable_events(ctx, ests, eot)
    specs: list[AttackSpec] = []
    # Order: for each attack, every estimator. Cheap, strong APGD-CE first breaks most samples,
    # so the later (costlier) attacks run on the few that are left.
    for name in b.estimator_attacks:
        if not _usable(name, ctx):
            continue
        for est in ests:
            attack, opts = _gradient_attack(name, ctx, b.steps, b.restarts)
            specs.append(AttackSpec(attack, opts, est, eot, "gradient", id=_replaced_id(name, attack, opts, est)))
    for name in b.own_attacks:
        if not _usable(name, ctx):
            continue
        attack, opts = _gradient_attack(name, ctx, b.steps, b.restarts)
        specs.append(AttackSpec(attack, opts, ests[0], eot, "gradient", id=_replaced_id(name, attack, opts, ests[0])))
    if ctx.threat.perturb == "spikes":
        ctx.notes.append("perturb=spikes: AutoAttack (APGD, FAB-T, Square) perturbs pixels only; PGD with the same "
                         "budget replaces APGD, FAB-T and Square are left out")
    else:
        specs.append(AttackSpec("square", {"n_queries": b.square_queries}, None, eot, "score"))
    specs.extend(_transfer_spec(ctx, b.transfer_steps))
    return specs


register_suite(Suite("seed-luu2025", "Luu et al. 2025: FGSM and PGD-7 (step 0.01, random start) at "
                     "eps 6/255, exact BPTT with the training surrogate", _luu2025, cascade=False, eps=6 / 255,
                     fixed_protocol=True, replication_options=True))
register_suite(Suite("seed-sharmin2020", "Sharmin et al. 2020: FGSM and PGD-7 (step 2/255, random "
                     "start) at eps 8/255, straight-through encoder, one stochastic sample per step; eps curve "
                     "2,4,6,8,16/255; white-box, plus the same attacks crafted on --transfer-from sources "
                     "(black-box) when given", _sharmin2020, cascade=False, eps=8 / 255,
                     eps_sweep=tuple(k / 255 for k in (2, 4, 6, 8, 16)), fixed_protocol=True))
register_suite(Suite("standard", "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square; rand version with EOT for "
                     "stochastic models), each on the samples still robust", _standard, cascade=True))
register_suite(Suite("reliable", "per-sample worst case over estimators x surrogate widths x {APGD-CE, APGD-T, "
                     "SA-PGD, FAB-T}, then Square and transfer; broken samples are not re-attacked (except under "
                     "budget exhaustive); masking diagnostics", _reliable, cascade=True, diagnostics=True))


def expand(suite: "str | Suite", ctx: SuiteContext) -> list[AttackSpec]:
    """The suite's attack list for this model and budget, each with a unique ``id``."""
    s = get_suite(suite)
    s.refuse_settings(eot=ctx.eot, estimators=ctx.estimators, budget=ctx.budget,
                      replicate_seed_code=ctx.replicate_seed_code)
    specs = assign_ids(s.build(ctx))
    if ctx.transfer_sources and not any(sp.kind == "transfer" for sp in specs):
        # the sources are recorded with the model (CLI); say plainly that no attack used them
        ctx.notes.append(f"transfer sources were given but suite {s.name} has no transfer attack: they were not used "
                         "(no black-box transfer number in this result)")
    if s.cascade and not s.cascades(ctx.budget):
        ctx.notes.append(f"budget {ctx.budget.name}: no cascade, every attack ran on every clean-correct sample "
                         "(standalone numbers); the worst case still combines them per sample")
    return specs


def spec_id(spec: AttackSpec) -> str:
    if spec.id:
        return spec.id
    if spec.estimator is None:
        return spec.attack
    return f"{spec.attack}/{spec.estimator}"


def assign_ids(specs: list[AttackSpec]) -> list[AttackSpec]:
    """Give every spec a readable, unique id (e.g. ``apgd-ce/bptt:atan:2``)."""
    out, seen = [], {}
    for s in specs:
        base = spec_id(s)
        n = seen.get(base, 0) + 1
        seen[base] = n
        out.append(dataclasses.replace(s, id=base if n == 1 else f"{base}#{n}"))
    return out
