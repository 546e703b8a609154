"""What every attack shares: the result type, the attack base class, config validation,
norm-aware steps and random points in the threat model's ball, and per-sample "best point"
bookkeeping.

Conventions (all attacks):

- ``z`` is what the attacker perturbs: pixels [B, C, H, W] in [0, 1], or the encoded spike
  tensor [T, B, C, H, W] when ``victim.threat.perturb == "spikes"``. Every tensor handled
  here has the batch on the axis given by :func:`batch_dim` (0 for pixels, 1 for spikes).
- Gradients come only from ``victim.grad`` (estimator + EOT applied there), predictions only
  from ``victim.predict``; every returned ``z_adv`` went through ``victim.project`` (eps ball
  and valid bounds).
- The kept point is the one a fresh vote is most likely to call misclassified (see
  :class:`BestPoints`): a candidate the victim's vote called misclassified always wins, even
  over a ``z0`` that its own vote also called misclassified; ``z0`` is kept only when nothing
  the attack found fooled the vote ("unchanged-or-better"). The final ``success`` is re-scored
  by ``victim.predict`` on the returned ``z_adv``.
- Randomness (random starts, noise draws) comes from CPU generators keyed by the attack's
  ``seed`` option, each sample's key (its index in the evaluation set) and the search number
  (:class:`~snnrobust.keyed_random.SampleDraws`), so a run is reproducible, identical on CPU
  and GPU, independent of batch composition, and the global torch RNG is left alone. A
  stochastic victim's passes (Poisson spikes, so EOT and votes) are keyed per sample as well:
  :meth:`Attack.run` opens :func:`keyed_passes` and declares the rows of every batch it hands
  the victim (:func:`rows_of`); an attack that queries a subset of its search's samples declares
  that subset's keys (Square does).

Each attack class declares what the evaluation needs to know about it, so nothing is guessed
from its name: ``kind`` (one of :data:`ATTACK_KINDS`), and the options that set its budget,
``steps_option`` / ``restarts_option`` (None when it has none; ``fixed_steps`` for a step count
no option sets, FGSM's 1). :meth:`Attack.run` is the one run path of the attacks we implement
(setup, restarts keeping the best point, finish); each implements only its search.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Optional, Sequence, Union

import torch

from ..errors import ConfigError
from ..keyed_random import SampleDraws, mix

NORMS = ("linf", "l2")

#: what an attack needs from the victim, which decides how the evaluation runs and reports it:
#: "single-step" and "gradient" (white-box: input gradients through an estimator), "score"
#: (query-only black box: predictions/scores), "transfer" (crafted on other models) and
#: "noise" (random points: the baseline any attack must beat).
ATTACK_KINDS = ("single-step", "gradient", "score", "transfer", "noise")


# ----------------------------------------------------------------------------- results
@dataclass
class AttackResult:
    """The outcome of one attack run on one batch.

    z_adv:      same shape as z0, inside the eps ball around z0 and inside ``victim.bounds``.
    success:    bool [B] on the CPU, ``victim.predict(z_adv) != y`` (scored on the returned points).
    loss_trace: float [n_steps + 1, B] (CPU) — the attack loss at each iterate of the kept run,
                the start included; None for single-shot attacks and for external code that
                does not expose it (AutoAttack's).
    meta:       every setting actually used (eps, norm, steps, step size, seed, ...).
    """

    z_adv: torch.Tensor
    success: torch.Tensor
    loss_trace: Optional[torch.Tensor]
    meta: dict = field(default_factory=dict)

    @property
    def robust(self) -> torch.Tensor:
        """bool [B]: the samples the attack did not break."""
        return ~self.success

    @property
    def robust_accuracy(self) -> float:
        return float((~self.success).float().mean().item()) if self.success.numel() else float("nan")


# ----------------------------------------------------------------------------- config validation
def check_int(attack: str, name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"attack {attack}: option '{name}' must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"attack {attack}: option '{name}' must be >= {minimum}, got {value}")
    return value


def check_float(attack: str, name: str, value: Any, low: float = 0.0, high: float = math.inf,
                low_open: bool = True, optional: bool = False) -> Optional[float]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"attack {attack}: option '{name}' must be a finite number, got {value!r}")
    v = float(value)
    if (v <= low if low_open else v < low) or v > high:
        bound = f"> {low}" if low_open else f">= {low}"
        extra = f" and <= {high}" if math.isfinite(high) else ""
        raise ConfigError(f"attack {attack}: option '{name}' must be {bound}{extra}, got {value}")
    return v


def check_bool(attack: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"attack {attack}: option '{name}' must be true or false, got {value!r}")
    return value


def check_choice(attack: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"attack {attack}: option '{name}' must be one of {', '.join(choices)}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- attack base
class Attack:
    """Base class. Subclasses set ``name``, ``description``, ``Config`` (a dataclass whose
    ``validate(attack_name)`` raises ConfigError), declare ``kind``, ``steps_option``,
    ``restarts_option`` (or ``fixed_steps``), and implement :meth:`_search` (plus :meth:`_start`
    and :meth:`_meta` where the defaults do not fit); attacks whose loop is not ours override
    :meth:`run` itself."""

    name: ClassVar[str] = "attack"
    description: ClassVar[str] = ""
    Config: ClassVar[type] = object
    iterative: ClassVar[bool] = False
    #: one of ATTACK_KINDS
    kind: ClassVar[str] = "gradient"
    #: the option that sets the steps (iterations, queries, draws), or None
    steps_option: ClassVar[Optional[str]] = None
    #: the step count of an attack that has no steps option (FGSM: 1), else None
    fixed_steps: ClassVar[Optional[int]] = None
    #: the option that sets the restarts, or None
    restarts_option: ClassVar[Optional[str]] = None
    #: the threat-model norms the attack can search under ("l0": flips of binary event frames)
    norms: ClassVar[tuple[str, ...]] = NORMS

    def __init__(self, config=None, **options: Any) -> None:
        if config is None:
            config = self.build_config(**options)
        elif options:
            raise ConfigError(f"attack {self.name}: give either a config or options, not both")
        if not isinstance(config, self.Config):
            raise ConfigError(f"attack {self.name}: config must be a {self.Config.__name__}")
        config.validate(self.name)
        self.config = config

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls.Config)]

    @classmethod
    def build_config(cls, **options: Any):
        allowed = cls.option_names()
        for k in options:
            if k not in allowed:
                raise ConfigError(
                    f"attack {cls.name} has no option '{k}'; its options: {', '.join(allowed) or 'none'}"
                )
        return cls.Config(**options)

    # budget, as declared ----------------------------------------------------------------
    @classmethod
    def budget(cls, settings: dict) -> tuple[Optional[int], Optional[int]]:
        """(steps, restarts) of a run from its recorded settings (``to_dict()``; a failed run
        may record only the name): the declared options' values, ``fixed_steps`` when there is
        no steps option, None for what the attack does not have or the settings lack."""
        steps = settings.get(cls.steps_option) if cls.steps_option else cls.fixed_steps
        restarts = settings.get(cls.restarts_option) if cls.restarts_option else None
        return steps, restarts

    @classmethod
    def with_budget(cls, options: dict, steps: Optional[int], restarts: Optional[int]) -> dict:
        """``options`` with ``steps`` / ``restarts`` (None: leave as is) written to the declared
        options; a one-line ConfigError when the attack has no such option."""
        opts = dict(options)
        for value, key in ((steps, cls.steps_option), (restarts, cls.restarts_option)):
            if value is None:
                continue
            if key is None:
                raise ConfigError(f"attack {cls.name} has no steps/restarts option to set; "
                                  f"its options: {', '.join(cls.option_names())}")
            opts[key] = value
        return opts

    def settings(self) -> dict:
        """The config as JSON-ready data (subclasses with non-data options override)."""
        return dataclasses.asdict(self.config)

    def to_dict(self) -> dict:
        """Name and every setting; eps and norm come from the victim's threat model at run time
        and are recorded in each result's ``meta``."""
        return {"name": self.name, **self.settings()}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({opts})"

    # the shared run path -----------------------------------------------------------------
    def run(self, victim, z0: torch.Tensor, y: torch.Tensor, keys: Optional[torch.Tensor] = None) -> AttackResult:
        """Attack z0 (see the module docstring for its shape) with labels y [B].

        Setup (estimator reset, device, the clean vote), then :meth:`n_searches` searches: the
        first on every sample, each later one (a restart, or another noise draw) only on the
        samples no kept point has fooled yet, each from :meth:`_start`; per sample the best
        point is kept (:class:`BestPoints`); finally the kept points are projected and
        re-scored by a fresh vote (:func:`finish`).

        ``keys`` [B]: each sample's index in the whole evaluation set (default: its position in
        the batch). Random starts and draws are keyed by (the ``seed`` option, key, search
        number), so a sample gets the same draws whatever its batch-mates, batch size or process."""
        begin_run(victim)
        check_norm(self, victim.threat.norm)
        z0, y = on_device(victim, z0, y)
        keys = sample_keys(keys, y.shape[0])
        seed = getattr(self.config, "seed", None)
        with keyed_passes(victim, self.name, seed, keys) as draws:
            bdim = batch_dim(victim)
            best = BestPoints(z0, misclassified(victim, z0, y), bdim, self.trace_length())
            s = Search(victim, bdim, float(victim.threat.eps), victim.threat.norm, None)
            all_idx = torch.arange(y.shape[0], device=best.success.device)
            for r in range(self.n_searches()):
                idx = all_idx if r == 0 else (~best.success).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                if seed is not None:  # this search's draws: keyed by sample and search number
                    s.gen = SampleDraws(seed, keys[idx.cpu()], stream=r)
                s.runs += 1
                zs, ys = index_batch(z0, idx, bdim), y[idx]
                with rows_of(victim, keys[idx.cpu()]):
                    found = self._search(s, zs, ys, self._start(s, zs), r)
                    best.update(idx, found.z, misclassified(victim, found.z, ys), found.loss, found.trace)
                if found.stop:
                    break
            meta = self.base_meta(victim)
            meta.update(self._meta(s))
            result = finish(victim, best, y, meta)
            note_unkeyed(meta, draws)
            return result

    def n_searches(self) -> int:
        """How many searches :meth:`run` makes at most: the declared restarts option, else 1."""
        return int(getattr(self.config, self.restarts_option)) if self.restarts_option else 1

    def trace_length(self) -> Optional[int]:
        """Rows of the loss trace (the start and one per step) of an iterative attack; None for
        attacks that record none."""
        if self.iterative and self.steps_option:
            return int(getattr(self.config, self.steps_option)) + 1
        return None

    def _start(self, s: "Search", zs: torch.Tensor) -> torch.Tensor:
        """The search's first point for the samples zs: a uniform random point in the eps ball
        when the attack has a ``random_start`` option set, else zs itself."""
        if getattr(self.config, "random_start", False):
            return s.victim.project(zs + random_delta(zs, s.norm, s.eps, s.gen, s.bdim), zs)
        return zs

    def _search(self, s: "Search", zs: torch.Tensor, ys: torch.Tensor, start: torch.Tensor,
                restart: int) -> "Candidates":  # pragma: no cover
        """One search (restart number ``restart``) on the samples zs (the batch's clean points,
        the ball's centres) with labels ys [n], from ``start``: the candidates it offers."""
        raise NotImplementedError(f"attack {self.name} implements neither _search nor run")

    def _meta(self, s: "Search") -> dict:
        """Settings the run resolved, recorded in the result's ``meta`` after :meth:`base_meta`."""
        return {}

    # helpers for subclasses ------------------------------------------------------------
    def base_meta(self, victim) -> dict:
        """Settings every result records: attack, threat model and how the victim was attacked."""
        meta = {"attack": self.name, **self.settings()}
        threat = victim.threat
        meta.update(norm=threat.norm, eps=float(threat.eps), perturb=threat.perturb)
        describe = getattr(victim, "describe", None)
        if callable(describe):
            meta["victim"] = describe()
        return meta


@dataclass
class Search:
    """What every search of one :meth:`Attack.run` shares: the victim, the batch axis of z, the
    threat model's eps (z units) and norm, the current search's per-sample draws (keyed by the
    attack's ``seed`` option, each sample's key and the search number; None for attacks without a seed)
    (None for attacks without one), the number of searches made so far (``runs``) and
    ``stats``, an attack's own bookkeeping across its searches (PGD's zero-gradient count)."""

    victim: Any
    bdim: int
    eps: float
    norm: str
    gen: Optional["Draws"]
    runs: int = 0
    stats: dict = field(default_factory=dict)


@dataclass
class Candidates:
    """What one search offers, batch = its samples (n of them):

    z:     the candidate points, shaped like the search's zs;
    loss:  float [n], ranks candidates that did not fool the vote (higher is kept);
    trace: float [n_trace, n] loss per iterate (CPU), or None;
    stop:  True ends the run after this search (PGD's seed-000 abort rule)."""

    z: torch.Tensor
    loss: torch.Tensor
    trace: Optional[torch.Tensor] = None
    stop: bool = False


def check_norm(attack: "Attack", norm: str) -> None:
    """A one-line ConfigError when ``attack`` cannot search under the threat model's norm."""
    if norm not in attack.norms:
        hint = {"l0": "; for L0 flips of binary event frames use eventflip (and noise as its baseline)",
                "retime": "; for retiming event frames use retime (and noise as its baseline)"}.get(norm, "")
        raise ConfigError(f"attack {attack.name} does not support the {norm} threat model (it supports "
                          f"{', '.join(attack.norms)}){hint}")


# ----------------------------------------------------------------------------- tensor helpers
def batch_dim(victim) -> int:
    """Axis of the batch in z: 0 for pixels [B,C,H,W], 1 for spikes [T,B,C,H,W]."""
    return 1 if victim.threat.perturb == "spikes" else 0


def to_batch_first(t: torch.Tensor, bdim: int) -> torch.Tensor:
    return t if bdim == 0 else t.movedim(bdim, 0)


def per_sample(v: torch.Tensor, like: torch.Tensor, bdim: int = 0) -> torch.Tensor:
    """Reshape a per-sample vector [B] so that it broadcasts against ``like``."""
    shape = [1] * like.dim()
    shape[bdim] = -1
    return v.reshape(shape)


def sample_norm(t: torch.Tensor, norm: str, bdim: int = 0) -> torch.Tensor:
    """Per-sample norm [B] of t ("linf", "l2" or "l1")."""
    flat = to_batch_first(t, bdim).reshape(t.shape[bdim], -1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise ConfigError(f"unknown norm {norm!r}; use linf or l2")


def sample_mean(t: torch.Tensor, bdim: int = 0) -> torch.Tensor:
    """Per-sample mean [B] over all non-batch entries."""
    return to_batch_first(t, bdim).reshape(t.shape[bdim], -1).mean(dim=1)


def steepest_direction(g: torch.Tensor, norm: str, bdim: int = 0) -> torch.Tensor:
    """The unit-norm ascent direction for a gradient g: sign(g) for L-inf, g/||g||_2 for L2
    (0 where the gradient is 0)."""
    if norm == "linf":
        return g.sign()
    n = sample_norm(g, "l2", bdim)
    return g / per_sample(n.clamp_min(1e-12), g, bdim) * per_sample((n > 0).to(g.dtype), g, bdim)


Draws = Union[torch.Generator, SampleDraws]


def random_like(z: torch.Tensor, gen: Draws, kind: str = "uniform", bdim: int = 0) -> torch.Tensor:
    """Random tensor shaped like z (batch on axis ``bdim``), drawn on the CPU then moved to z's
    device: from one generator, or per sample (:class:`~snnrobust.keyed_random.SampleDraws`:
    row i depends on sample i's key only)."""
    if isinstance(gen, SampleDraws):
        u = gen.draw(to_batch_first(z, bdim).shape, kind).movedim(0, bdim)
    else:
        draw = torch.rand if kind == "uniform" else torch.randn
        u = draw(z.shape, generator=gen, dtype=torch.float32)
    return u.to(device=z.device, dtype=z.dtype)


def _per_row_uniform(gen: Draws, B: int) -> torch.Tensor:
    """[B] uniform numbers (one per sample; on their own stream under SampleDraws)."""
    if isinstance(gen, SampleDraws):
        return SampleDraws(gen.seed, gen.keys, (gen.stream, "radius")).draw((B, 1))[:, 0]
    return torch.rand(B, generator=gen, dtype=torch.float32)


def random_delta(z0: torch.Tensor, norm: str, radius: float, gen: Draws,
                 bdim: int = 0, boundary: bool = False) -> torch.Tensor:
    """A random perturbation shaped like z0, from ``gen`` (a generator, or per-sample keyed draws).

    L-inf: uniform in [-r, r] per entry (``boundary``: ±r, the ball's corners).
    L2: uniform in the L2 ball of radius r (direction ~ Gaussian, radius r·u^(1/d)); with
    ``boundary`` exactly on its sphere.
    L0 (binary z0): flips of ``r`` slots drawn uniformly without replacement (``boundary`` or
    not: a random flip set is always the full budget), as +1 / -1 at those slots.
    Retiming: uniform random scores minus z0, which the retiming projection turns into each
    event at a random slot of its window.
    """
    if norm == "retime":  # random scores: the retiming projection turns them into a random valid retiming
        return random_like(z0, gen, "uniform", bdim) - z0
    if norm == "l0":
        B = z0.shape[bdim]
        flat = to_batch_first(z0, bdim).reshape(B, -1)
        k = min(int(radius), flat.shape[1])
        scores = random_like(flat.cpu(), gen, "uniform")
        pick = torch.zeros(flat.shape, dtype=torch.bool)
        if k > 0:
            pick.scatter_(1, scores.topk(k, dim=1).indices, True)
        pick = pick.to(z0.device)
        delta = torch.where(pick, 1.0 - 2.0 * flat, torch.zeros_like(flat))
        return delta.reshape(to_batch_first(z0, bdim).shape).movedim(0, bdim)
    if norm == "linf":
        u = random_like(z0, gen, "uniform", bdim)
        if boundary:
            return radius * torch.where(u < 0.5, -1.0, 1.0).to(z0.dtype)
        return radius * (2.0 * u - 1.0)
    if norm == "l2":
        d = random_like(z0, gen, "normal", bdim)
        d = d / per_sample(sample_norm(d, "l2", bdim).clamp_min(1e-12), d, bdim)
        if boundary:
            return radius * d
        B = z0.shape[bdim]
        dims = z0.numel() // max(B, 1)
        u = _per_row_uniform(gen, B).to(device=z0.device, dtype=z0.dtype)
        return radius * d * per_sample(u.pow(1.0 / dims), d, bdim)
    raise ConfigError(f"unknown norm {norm!r}; use linf or l2")


def index_batch(t: torch.Tensor, idx: torch.Tensor, bdim: int) -> torch.Tensor:
    return t.index_select(bdim, idx)


def sample_keys(keys: Optional[torch.Tensor], B: int) -> torch.Tensor:
    """Each sample's key [B] on the CPU (default: its position in the batch)."""
    keys = torch.arange(B) if keys is None else torch.as_tensor(keys).reshape(-1).cpu()
    if keys.numel() != B:
        raise ValueError(f"{keys.numel()} sample keys for a batch of {B}")
    return keys


def keyed_passes(victim, attack: str, seed: Optional[int], keys: torch.Tensor):
    """Context for one attack run: the victim's random forward passes (Poisson draws, hence EOT
    and vote passes) keyed per sample by (attack, ``seed``, key, the sample's pass number), see
    :meth:`~snnrobust.evaluation.victim.Victim.keyed`; a no-op for victims without it."""
    keyed = getattr(victim, "keyed", None)
    if not callable(keyed):
        return nullcontext()
    return keyed(mix(attack, 0 if seed is None else seed, "passes"), keys)


def note_unkeyed(meta: dict, draws) -> None:
    """Record in ``meta`` how many random passes of the run could not be keyed per sample
    (their batch did not match the declared rows): 0 when every draw was keyed."""
    if draws is not None:
        meta["unkeyed_passes"] = int(draws.unkeyed)


def rows_of(victim, keys: torch.Tensor):
    """Context: the tensors handed to ``victim`` inside it are the samples ``keys``."""
    rows = getattr(victim, "rows", None)
    return rows(keys) if callable(rows) else nullcontext()


def begin_run(victim) -> None:
    """Start of an attack run: clear stateful estimators (ASSG's EMAs) so that runs are
    independent of what was attacked before."""
    est = getattr(victim, "estimator", None)
    reset = getattr(est, "reset", None)
    if callable(reset):
        reset()


def on_device(victim, z0: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z0 (detached) and y on the victim's device."""
    device = getattr(victim, "device", None)
    if device is None:
        return z0.detach(), y
    return z0.detach().to(device), y.to(device)


def misclassified(victim, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """bool [B]: the victim's (voted) prediction differs from y."""
    return (victim.predict(z) != y).to(torch.bool)


def vote_score(victim, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One vote of the victim at z: (fooled bool [B], score float [B]).

    ``fooled`` is ``victim.predict(z) != y`` for this vote. ``score`` ranks points by how
    surely a fresh vote would call them misclassified: the lead of the strongest wrong class
    over y in vote counts, as a fraction of the ``vote`` passes (in [-1, 1]), with the lead in
    mean softmax (in [-1, 1]) as tie-break, scaled below one count so it never outranks a
    count. For a deterministic victim (vote = 1) that is +-1 plus a third of the softmax margin."""
    counts, probs = victim.votes(z)
    y = y.to(counts.device).long().unsqueeze(1)
    fooled = counts.argmax(1) != y.squeeze(1)
    n = float(victim.vote)
    lead_c = (counts.scatter(1, y, -1).amax(1) - counts.gather(1, y).squeeze(1)).float() / n
    lead_p = probs.scatter(1, y, -math.inf).amax(1) - probs.gather(1, y).squeeze(1)
    return fooled, lead_c + lead_p.float() / (3.0 * n)


# ----------------------------------------------------------------------------- best-point tracking
class BestPoints:
    """Per sample, the point the attack returns: the one a fresh vote of the victim is most
    likely to call misclassified, in this order of preference:

    1. a candidate the attack offered that the victim's vote called misclassified (the first
       such one: ``success``);
    2. ``z0``, when the vote at ``z0`` called it misclassified (``success0``);
    3. the offered candidate with the highest attack loss;
    4. ``z0``.

    1 before 2 matters on stochastic models: the vote at ``z0`` is as noisy as the one at the
    candidate, so a point that fooled the model is never thrown away because a vote at the
    clean point also happened to say "misclassified" (on a deterministic model both are exact
    and either point is adversarial). ``success`` is True only for found candidates, so an
    attack that keeps working on ``~success`` also works on samples whose clean vote said
    misclassified. The returned ``success`` is re-scored by :func:`finish` anyway.

    Also keeps, per sample, the loss trace of the run whose point is kept (the first run's
    trace for samples whose point never changed).
    """

    def __init__(self, z0: torch.Tensor, success0: torch.Tensor, bdim: int, n_trace: Optional[int]) -> None:
        self.bdim = bdim
        self.z0 = z0.detach()
        self.z = z0.detach().clone()
        B = success0.shape[0]
        #: bool [B]: the vote at z0 called it misclassified (z0 is then the fallback point)
        self.success0 = success0.detach().clone().to(torch.bool)
        #: bool [B]: the kept point is a candidate the victim's vote called misclassified
        self.success = torch.zeros_like(self.success0)
        #: bool [B]: the kept point is still z0
        self.at_z0 = torch.ones_like(self.success0)
        self.loss = torch.full(success0.shape, -math.inf, device=z0.device)
        self.trace = torch.full((n_trace, B), math.nan) if n_trace else None
        self._trace_set = torch.zeros(B, dtype=torch.bool)

    def update(self, idx: torch.Tensor, z: torch.Tensor, success: torch.Tensor, loss: torch.Tensor,
               trace: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Offer candidates z (batch = idx) with their vote's verdict success [n] and loss [n];
        returns the bool [n] mask of candidates that were kept."""
        success = success.to(torch.bool).to(self.success.device)
        loss = loss.detach().to(self.loss.device)
        old_s, old_l = self.success[idx], self.loss[idx]
        holds_z0 = self.at_z0[idx] & self.success0[idx]   # preference 2 beats any non-fooling candidate
        take = (success & ~old_s) | (~success & ~old_s & ~holds_z0 & (loss > old_l))
        if take.any():
            sel = idx[take]
            zt = index_batch(z.detach(), take.nonzero().squeeze(1), self.bdim)
            self.z.index_copy_(self.bdim, sel, zt)
            self.success[sel] = success[take]
            self.loss[sel] = loss[take]
            self.at_z0[sel] = False
        if trace is not None and self.trace is not None:
            trace = trace.detach().cpu()
            first = ~self._trace_set[idx.cpu()]
            put = take.cpu() | first
            cols = idx.cpu()[put]
            self.trace[:, cols] = trace[:, put]
            self._trace_set[cols] = True
        return take

    def revoke(self, idx: torch.Tensor) -> None:
        """A later vote called the kept points of samples ``idx`` correct: they no longer count
        as found, so the next candidate that fools the vote replaces them (a non-fooling one
        must still beat their loss)."""
        self.success[idx] = False
        self.success0[idx] = False


def stack_trace(losses: list[torch.Tensor], n: int) -> torch.Tensor:
    """Stack per-step losses [B] into [n, B] on the CPU, carrying the last value forward when a
    run stopped early (so the shape is the same for every run)."""
    rows = [loss.detach().float().cpu() for loss in losses]
    while len(rows) < n:
        rows.append(rows[-1].clone())
    return torch.stack(rows[:n], dim=0)


def finish(victim, best: BestPoints, y: torch.Tensor, meta: dict,
           trace: Optional[torch.Tensor] = None) -> AttackResult:
    """Build the result from the kept points: project once more through ``victim.project``
    (idempotent; guards against float drift) and score them with ``victim.predict``. For a
    stochastic victim this is a fresh vote, so picking the luckiest of several random draws
    does not inflate the success rate."""
    z_adv = victim.project(best.z, best.z0).detach()
    success = misclassified(victim, z_adv, y).cpu()
    return AttackResult(z_adv=z_adv, success=success,
                        loss_trace=trace if trace is not None else best.trace, meta=meta)
