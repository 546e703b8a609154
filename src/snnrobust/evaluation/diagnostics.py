"""Gradient-masking diagnostics (Athalye et al. 2018; Carlini et al. 2019), run with every
``reliable`` evaluation. Each check returns PASS, WARN or SKIP with its numbers and a
one-line summary:

(a) ``eps-to-zero``            accuracy falls to about 0 as eps grows (PGD up to a large eps; the
                               largest eps, which decides the check, gets the larger step budget);
(b) ``iterative-beats-single``  PGD robust accuracy <= FGSM robust accuracy, and a tie is not
                               explained by gradients that are zero or uninformative;
(c) ``more-budget-helps``      more steps or restarts never raise robust accuracy (nor does
                               plain PGD beat the whole suite), and when they break nothing more,
                               it is not because the gradients are zero or uninformative;
(d) ``damage-order``           white-box damage >= transfer damage >= random-noise damage, and
                               black-box attacks break (almost) nothing the gradient attacks missed;
(e) ``input-gradients``        fraction of exactly-zero input gradients and the distribution of
                               their norms, per gradient estimator;
(f) ``loss-rises``             the attack loss rises along the attack path on a clear majority of
                               samples, more often than loss noise alone would make it rise.

"Zero or uninformative gradients" is read off PGD's own loss: with zero gradients PGD never
leaves its random start, so its loss does not rise; with gradients that carry no information
(or a stochastic model whose output is noise) the loss rises on about half the samples, by
chance. A tie between a weak and a strong attack is only evidence that the weak one is already
optimal (e.g. FGSM on a linear model) when the strong attack at least raises its loss on the
samples it fails to break.

Under the event-domain threat models the same checks run with that threat model's attacks
(:data:`CHECK_ATTACKS`): the iterative gradient attack is ``eventflip`` (L0 flips) or ``retime``
in place of PGD, its one-step form in place of FGSM, and ``noise`` draws valid points of the same
budget. (a) then grows the flip budget towards half of all slots (accuracy must fall to about 0)
or the time shift towards the whole window; retiming keeps every pixel's event count, so a model
that counts events keeps its accuracy at any shift, and (a) only checks that accuracy does not
rise with the shift there.

All checks run on the first ``budget.diag_n`` samples of the evaluation set (the same samples
for every check, so comparisons are paired), attacking with the gradient estimator that broke
the most samples in the evaluation (the one its number rests on; the model's own surrogate when
only one was used). The attacks they need are run through a :class:`DiagnosticRunner`, which
:mod:`snnrobust.evaluation.engine` provides.

Tolerances (documented constants below): paired comparisons of two robust accuracies on the
same n samples allow ``tolerance(n) = max(TOL_ABS, TOL_SAMPLES / n)`` — a point or two samples
of run-to-run noise, whichever is larger; the large-eps check uses the Wilson interval, so that
a handful of samples cannot raise a WARN by chance and a clear residual accuracy always does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import torch

from .metrics import Rate
from .threat import EVENT_NORMS

# ----------------------------------------------------------------------------- tolerances
#: Paired robust-accuracy comparisons may differ by this much (absolute) without a WARN ...
TOL_ABS = 0.01
#: ... or by this many samples, whichever is larger (small diagnostic sets are noisy).
TOL_SAMPLES = 2
#: (a) WARN when the Wilson 95 % lower bound of accuracy at the largest eps exceeds this.
MAX_ACC_AT_LARGE_EPS = 0.05
#: (a) the largest eps of the sweep, as a fraction of the input range (L-inf); L2 scales it by sqrt(d).
LARGE_EPS_FRACTION = 0.5
#: (a) number of eps values in the sweep (geometric from the evaluation's eps to the large eps).
SWEEP_POINTS = 4
#: (e) WARN when more than this fraction of samples have an all-zero input gradient ...
MAX_ZERO_GRADIENT_SAMPLES = 0.5
#: ... or when the median per-sample L2 norm of the input gradient is below this.
TINY_GRADIENT_NORM = 1e-6
#: (e) the loss whose input gradient is measured: the CW margin does not saturate like CE,
#: so a zero here is a property of the model's gradients, not of a confident softmax.
GRADIENT_LOSS = "cw"
#: (b, c, f) a sample's loss counts as risen when it grew by more than this fraction of its
#: size: a point that never moved (zero gradients) must not count as rising by float jitter.
LOSS_RISE_RTOL = 1e-6
#: (f) the rising fraction that an attack making no progress reaches by chance when the loss is
#: noisy (a stochastic model: start and end losses are independent draws, each rises half the
#: time). WARN unless the Wilson 95 % lower bound of the rising fraction is above it.
CHANCE_RISING_FRACTION = 0.5
#: (b, c) the gradients count as zero or uninformative on the samples an attack left robust
#: when the Wilson 95 % upper bound of the fraction whose loss rose is below this: the data
#: rule out a clear majority rising (0 % with zero gradients, ~50 % with noise for gradients).
CLEAR_MAJORITY = 0.75

STATUSES = ("PASS", "WARN", "SKIP")

#: the attacks the checks run under each threat-model norm: (iterative gradient attack, single-step
#: attack, the single-step attack's options). The iterative attack takes ``steps``, ``restarts`` and
#: ``random_start``.
CHECK_ATTACKS: dict[str, tuple[str, str, dict]] = {
    "linf": ("pgd", "fgsm", {}),
    "l2": ("pgd", "fgsm", {}),
    "l0": ("eventflip", "eventflip", {"steps": 1}),
    "retime": ("retime", "retime", {"steps": 1}),
}


def tolerance(n: int) -> float:
    """Allowed difference between two paired robust accuracies on n samples (inclusive: the
    margin absorbs float rounding, so that exactly TOL_SAMPLES samples never count as more,
    e.g. 0.45 > 0.35 + 0.1 in floats)."""
    return max(TOL_ABS, TOL_SAMPLES / max(n, 1)) + 1e-9


# ----------------------------------------------------------------------------- result type
@dataclass
class DiagnosticResult:
    name: str
    status: str            # PASS | WARN | SKIP
    summary: str           # one line
    numbers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"diagnostic status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "summary": self.summary, "numbers": self.numbers}

    @classmethod
    def from_dict(cls, d: dict) -> "DiagnosticResult":
        return cls(d["name"], d["status"], d["summary"], dict(d.get("numbers") or {}))

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<24} {self.summary}"


# ----------------------------------------------------------------------------- runner protocol
@dataclass
class AttackRun:
    """A standalone attack on the diagnostic samples.

    robust: bool [n] — still correct after the attack (False for clean mistakes);
    loss_start / loss_end: float [n] or None — attack loss at the first and last iterate
    (NaN for samples not attacked)."""

    robust: torch.Tensor
    loss_start: Optional[torch.Tensor] = None
    loss_end: Optional[torch.Tensor] = None
    meta: dict = field(default_factory=dict)

    @property
    def rate(self) -> Rate:
        return Rate(int(self.robust.sum().item()), self.robust.numel())


class DiagnosticRunner(Protocol):
    """What the checks need from the evaluator (implemented in evaluate.py)."""

    n: int
    threat: object                         # ThreatModel of the evaluation
    bounds: tuple[float, float]            # valid range of z
    z_dims: int                            # entries per sample of z
    z_shape: tuple                         # shape of one sample of z ([T, C, H, W] for event frames)
    clean_correct: torch.Tensor            # bool [n]
    estimators: list[str]                  # the suite's estimators; [0] = the one the checks attack with
    steps: int                             # diag_steps
    more_steps: int                        # diag_more_steps
    restarts: int                          # diag_restarts
    noise_draws: int
    has_transfer: bool
    main_whitebox_robust: Optional[torch.Tensor]   # bool [n]: after the suite's gradient attacks
    main_robust: Optional[torch.Tensor]            # bool [n]: after the whole suite
    main_blackbox_only: Optional[dict]             # attack id -> samples only it broke (of all main_n samples)
    main_n: int                                    # samples of the whole evaluation
    main_traces: list                              # [(attack id, loss_start [m], loss_end [m])]

    def attack(self, name: str, options: dict, eps: Optional[float] = None) -> AttackRun: ...

    def transfer(self) -> Optional[AttackRun]: ...

    def gradients(self, estimator: str, loss: str) -> torch.Tensor: ...


def _attacks(r: DiagnosticRunner) -> tuple[str, str, dict]:
    return CHECK_ATTACKS[r.threat.norm]


def iterative(r: DiagnosticRunner, steps: int, restarts: int = 1, eps: Optional[float] = None) -> AttackRun:
    """The threat model's iterative gradient attack (PGD on L-inf/L2 balls) from a random start."""
    opts: dict = {"steps": steps, "random_start": True}
    if restarts > 1:
        opts["restarts"] = restarts
    return r.attack(_attacks(r)[0], opts, eps=eps)


def iterative_label(r: DiagnosticRunner) -> str:
    name = _attacks(r)[0]
    return "PGD" if name == "pgd" else name


def iterative_name(r: DiagnosticRunner, steps: int) -> str:
    return f"{iterative_label(r)}-{steps}"


def single_step(r: DiagnosticRunner) -> tuple[AttackRun, str]:
    """(run, label) of the threat model's single-step attack (FGSM on L-inf/L2 balls)."""
    _, name, opts = _attacks(r)
    return r.attack(name, dict(opts)), ("FGSM" if name == "fgsm" else f"{name}-1")


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _rising_mask(start: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rising, ran), bool [m] each, for losses start/end [m]: ``ran`` drops samples the attack
    did not run on (NaN); ``rising`` = the loss grew by more than LOSS_RISE_RTOL of its size."""
    s, e = start.double(), end.double()
    ran = ~(torch.isnan(s) | torch.isnan(e))
    # the margin stays finite so that a loss that rose to +inf still counts as rising
    size = torch.maximum(s.abs(), e.abs()).clamp(max=torch.finfo(torch.float64).max)
    return ran & ((e - s) > LOSS_RISE_RTOL * size), ran


def loss_progress(run: AttackRun, sel: torch.Tensor) -> Optional[Rate]:
    """Of the samples in the bool mask ``sel`` [n] that ``run`` attacked, how many ended it with
    a higher attack loss than they started with: Rate(rising, attacked); None when the attack
    exposes no loss trace."""
    if run.loss_start is None or run.loss_end is None:
        return None
    rising, ran = _rising_mask(run.loss_start[sel], run.loss_end[sel])
    return Rate(int(rising.sum().item()), int(ran.sum().item()))


def _uninformative(progress: Optional[Rate], n: int) -> bool:
    """True when more than tolerance(n) of the n diagnostic samples were left robust by an
    attack whose loss rose on clearly less than a CLEAR_MAJORITY of them (zero gradients: the
    loss never moves; gradients that are noise: it rises about half the time)."""
    if progress is None or progress.n == 0 or progress.n / max(n, 1) <= tolerance(n):
        return False
    return progress.ci_high < CLEAR_MAJORITY


def _progress_numbers(progress: Optional[Rate]) -> dict | str:
    return "SKIP: the attack exposes no loss trace" if progress is None else progress.to_dict()


# ----------------------------------------------------------------------------- (a)
def large_eps(runner: DiagnosticRunner) -> float:
    lo, hi = runner.bounds
    big = LARGE_EPS_FRACTION * (hi - lo)
    if runner.threat.norm == "l2":
        big *= math.sqrt(runner.z_dims)
    elif runner.threat.norm == "l0":  # a whole number of flips: that fraction of every slot
        big = float(math.ceil(LARGE_EPS_FRACTION * runner.z_dims))
    elif runner.threat.norm == "retime":  # every event may move anywhere in the window of T frames
        big = float(max(int(runner.z_shape[0]) - 1, 1))
    return big


def eps_grid(eps: float, big: float, points: int = SWEEP_POINTS) -> list[float]:
    """Geometric grid from eps to big (just [eps] when eps >= big or eps == 0)."""
    if eps <= 0:
        eps = big / 64
    if eps >= big:
        return [eps]
    return [eps * (big / eps) ** (i / (points - 1)) for i in range(points)]


def integer_grid(grid: list[float]) -> list[float]:
    """The grid rounded to whole numbers >= 1, without repeats (flip counts, frame shifts)."""
    return [float(v) for v in sorted({max(1, round(e)) for e in grid})]


def check_eps_to_zero(r: DiagnosticRunner) -> DiagnosticResult:
    norm = r.threat.norm
    grid = eps_grid(float(r.threat.eps), large_eps(r))
    if norm in EVENT_NORMS:  # eps counts flips or frames: the sweep takes whole numbers
        grid = integer_grid(grid)
    # the verdict rests on the largest eps, so it gets the larger step budget
    steps = [r.steps] * (len(grid) - 1) + [r.more_steps]
    rates = [iterative(r, s, eps=e).rate for s, e in zip(steps, grid)]
    last = rates[-1]
    tol = tolerance(r.n)
    rises = [(grid[i], grid[i + 1]) for i in range(len(grid) - 1) if rates[i + 1].value > rates[i].value + tol]
    # retiming keeps each pixel's event count: a model that counts events is invariant at any shift
    expects_zero = norm != "retime"
    numbers = {"eps": grid, "robust_accuracy": [x.to_dict() for x in rates], "steps": steps,
               "attack": _attacks(r)[0], "threshold": MAX_ACC_AT_LARGE_EPS if expects_zero else None,
               "tolerance": tol}
    curve = ", ".join(f"{e:.3g}: {_pct(x.value)}" for e, x in zip(grid, rates))
    if not expects_zero:
        numbers["note"] = "retiming keeps every event, so accuracy need not fall to 0; only a rise is checked"
        if rises:
            return DiagnosticResult("eps-to-zero", "WARN", f"accuracy rises with the time shift ({curve}): the "
                                    "attack is unreliable", numbers)
        return DiagnosticResult("eps-to-zero", "PASS", f"accuracy does not rise with the time shift ({curve}; "
                                "retiming keeps every event, so it need not reach 0)", numbers)
    if last.ci_low > MAX_ACC_AT_LARGE_EPS:
        return DiagnosticResult("eps-to-zero", "WARN", f"{iterative_name(r, steps[-1])} leaves {last.percent()} "
                                f"accuracy at eps={grid[-1]:.3g} "
                                f"(should be ~0): attacks are failing, not the model robust ({curve})", numbers)
    if rises:
        return DiagnosticResult("eps-to-zero", "WARN", f"accuracy rises with eps ({curve}): the attack is "
                                "unreliable", numbers)
    return DiagnosticResult("eps-to-zero", "PASS", f"accuracy falls to {_pct(last.value)} at eps={grid[-1]:.3g} "
                            f"({curve})", numbers)


# ----------------------------------------------------------------------------- (b)
def check_iterative_beats_single(r: DiagnosticRunner) -> DiagnosticResult:
    fgsm, single_label = single_step(r)
    pgd = iterative(r, r.steps)
    tol = tolerance(r.n)
    only_fgsm = int((~fgsm.robust & pgd.robust).sum().item())
    # PGD's loss on the samples it could not break: did its steps at least make progress there?
    progress = loss_progress(pgd, r.clean_correct & pgd.robust)
    numbers = {"fgsm": fgsm.rate.to_dict(), "pgd": pgd.rate.to_dict(), "pgd_steps": r.steps, "tolerance": tol,
               "attacks": {"single": single_label, "iterative": iterative_name(r, r.steps)},
               "broken_by_fgsm_not_pgd": only_fgsm, "pgd_loss_rising_where_robust": _progress_numbers(progress),
               "clear_majority": CLEAR_MAJORITY}
    diff = pgd.rate.value - fgsm.rate.value
    it_label = iterative_name(r, r.steps)
    text = f"{it_label} {_pct(pgd.rate.value)} vs {single_label} {_pct(fgsm.rate.value)} robust accuracy"
    if diff > tol:
        return DiagnosticResult("iterative-beats-single", "WARN", text + f": the single step wins by {_pct(diff)} "
                                f"({only_fgsm} samples broken by {single_label} only) — a sign of masked gradients",
                                numbers)
    if diff >= -tol and _uninformative(progress, r.n):
        # A tie is fine when FGSM is already optimal (a linear model), but then PGD still
        # raises its loss where it fails; a flat or coin-flip loss means no attack was tested.
        assert progress is not None
        return DiagnosticResult("iterative-beats-single", "WARN", text + f": {it_label} breaks no more than "
                                f"{single_label} and its "
                                f"loss rises on only {progress.k} of the {progress.n} samples it leaves robust — the "
                                "gradients are zero or uninformative, so neither attack tests those samples", numbers)
    return DiagnosticResult("iterative-beats-single", "PASS", text, numbers)


# ----------------------------------------------------------------------------- (c)
def check_more_budget_helps(r: DiagnosticRunner) -> DiagnosticResult:
    base = iterative(r, r.steps)
    more = iterative(r, r.more_steps)
    rest = iterative(r, r.steps, restarts=r.restarts)
    tol = tolerance(r.n)
    numbers = {"attack": _attacks(r)[0],
               "pgd": {"steps": r.steps, "restarts": 1, "robust_accuracy": base.rate.to_dict()},
               "more_steps": {"steps": r.more_steps, "restarts": 1, "robust_accuracy": more.rate.to_dict()},
               "more_restarts": {"steps": r.steps, "restarts": r.restarts, "robust_accuracy": rest.rate.to_dict()},
               "tolerance": tol}
    problems = []
    # the longest run's loss on the samples it could not break: is more budget able to help at all?
    progress = loss_progress(more, r.clean_correct & more.robust)
    numbers["more_steps"]["loss_rising_where_robust"] = _progress_numbers(progress)
    numbers["clear_majority"] = CLEAR_MAJORITY
    gain = base.rate.value - min(more.rate.value, rest.rate.value)
    if gain <= tol and _uninformative(progress, r.n):
        assert progress is not None
        problems.append(f"neither {r.more_steps} steps nor {r.restarts} restarts break more than {r.steps} steps, "
                        f"and the {r.more_steps}-step loss rises on only {progress.k} of the {progress.n} samples left "
                        "robust: no budget can help when the gradients are zero or uninformative")
    if more.rate.value > base.rate.value + tol:
        problems.append(f"{r.more_steps} steps give {_pct(more.rate.value)} > {_pct(base.rate.value)} with {r.steps}")
    if rest.rate.value > base.rate.value + tol:
        problems.append(f"{r.restarts} restarts give {_pct(rest.rate.value)} > {_pct(base.rate.value)} with 1")
    if r.main_robust is not None:
        suite = Rate(int(r.main_robust.sum().item()), r.main_robust.numel())
        numbers["suite_worst_case"] = suite.to_dict()
        best_pgd = min(base.rate.value, more.rate.value, rest.rate.value)
        if suite.value > best_pgd + tol:
            problems.append(f"the whole suite leaves {_pct(suite.value)} but plain {iterative_name(r, r.steps)} only "
                            f"{_pct(best_pgd)}")
    text = (f"{iterative_label(r)} {r.steps} steps {_pct(base.rate.value)}, "
            f"{r.more_steps} steps {_pct(more.rate.value)}, {r.restarts} restarts {_pct(rest.rate.value)}")
    if problems:
        return DiagnosticResult("more-budget-helps", "WARN", "; ".join(problems) + " — the attack is not converging "
                                "or is misled by the gradients", numbers)
    return DiagnosticResult("more-budget-helps", "PASS", text, numbers)


# ----------------------------------------------------------------------------- (d)
def check_damage_order(r: DiagnosticRunner) -> DiagnosticResult:
    tol = tolerance(r.n)
    pgd = iterative(r, r.more_steps)
    wb = pgd.robust.clone()
    if r.main_whitebox_robust is not None:
        wb &= r.main_whitebox_robust
    wb_rate = Rate(int(wb.sum().item()), wb.numel())
    noise = r.attack("noise", {"draws": r.noise_draws})
    tr = r.transfer()
    clean = Rate(int(r.clean_correct.sum().item()), r.clean_correct.numel())
    numbers: dict = {"clean": clean.to_dict(), "white_box": wb_rate.to_dict(), "noise": noise.rate.to_dict(),
                     "noise_draws": r.noise_draws, "tolerance": tol,
                     "damage": {"white_box": clean.value - wb_rate.value, "noise": clean.value - noise.rate.value}}
    problems = []
    weak_source = ""  # transfer below noise says the sources are unlike the model, not that its gradients mislead
    if tr is not None:
        numbers["transfer"] = tr.rate.to_dict()
        numbers["damage"]["transfer"] = clean.value - tr.rate.value
        if wb_rate.value > tr.rate.value + tol:
            problems.append(f"transfer does more damage than white-box ({_pct(tr.rate.value)} vs {_pct(wb_rate.value)} "
                            "robust)")
        if tr.rate.value > noise.rate.value + tol:
            weak_source = (f"transfer does less damage than random noise ({_pct(tr.rate.value)} vs "
                           f"{_pct(noise.rate.value)} robust) — the sources' examples carry over worse than noise, "
                           "so the transfer check is weak evidence here; add a source of the same kind (an "
                           "independently trained model with the same defense)")
    else:
        numbers["transfer"] = "SKIP: no transfer sources given"
    if wb_rate.value > noise.rate.value + tol:
        problems.append(f"random noise does more damage than white-box ({_pct(noise.rate.value)} vs "
                        f"{_pct(wb_rate.value)} robust)")
    if r.main_blackbox_only:
        numbers["broken_only_by_black_box"] = dict(r.main_blackbox_only)
        total = sum(r.main_blackbox_only.values())
        main_n = getattr(r, "main_n", r.n)
        numbers["black_box_tolerance"] = tolerance(main_n)
        if total / max(main_n, 1) > tolerance(main_n):
            problems.append(f"black-box attacks broke {total} of {main_n} samples every gradient attack missed "
                            f"({', '.join(f'{k}: {v}' for k, v in r.main_blackbox_only.items() if v)})")
    tr_text = f"transfer {_pct(tr.rate.value)}" if tr is not None else "transfer skipped (no sources)"
    text = f"robust accuracy: white-box {_pct(wb_rate.value)}, {tr_text}, noise {_pct(noise.rate.value)}"
    said = (["; ".join(problems) + " — white-box gradients are misleading"] if problems else []) \
        + ([weak_source] if weak_source else [])
    if said:
        return DiagnosticResult("damage-order", "WARN", "; ".join(said), numbers)
    return DiagnosticResult("damage-order", "PASS", text, numbers)


# ----------------------------------------------------------------------------- (e)
def gradient_stats(g: torch.Tensor) -> dict:
    """Statistics of input gradients g [n, ...] (batch first): exact zeros and per-sample L2 norms."""
    flat = g.detach().reshape(g.shape[0], -1).double()
    norms = flat.norm(dim=1)
    zero_entries = float((flat == 0).double().mean().item()) if flat.numel() else float("nan")
    qs = [5, 25, 50, 75, 95]
    pct = torch.quantile(norms, torch.tensor([q / 100 for q in qs], dtype=torch.float64)).tolist() if norms.numel() \
        else [float("nan")] * len(qs)
    return {"zero_entry_fraction": zero_entries,
            "all_zero_sample_fraction": float((norms == 0).double().mean().item()) if norms.numel() else float("nan"),
            "tiny_norm_fraction": float((norms < TINY_GRADIENT_NORM).double().mean().item()) if norms.numel()
            else float("nan"),
            "l2_norm_percentiles": {f"p{q}": v for q, v in zip(qs, pct)}}


def _masked(stats: dict) -> bool:
    return (stats["all_zero_sample_fraction"] > MAX_ZERO_GRADIENT_SAMPLES
            or stats["l2_norm_percentiles"]["p50"] < TINY_GRADIENT_NORM)


def check_input_gradients(r: DiagnosticRunner) -> DiagnosticResult:
    per: dict = {}
    for est in r.estimators:
        per[est] = gradient_stats(r.gradients(est, GRADIENT_LOSS))
    numbers = {"loss": GRADIENT_LOSS, "per_estimator": per, "max_zero_gradient_samples": MAX_ZERO_GRADIENT_SAMPLES,
               "tiny_norm": TINY_GRADIENT_NORM}
    own = r.estimators[0]  # the estimator the evaluation's number rests on
    masked = [e for e in r.estimators if _masked(per[e])]
    s = per[own]
    numbers["attack_estimator"] = own
    text = (f"{own}: {_pct(s['zero_entry_fraction'])} zero entries, {_pct(s['all_zero_sample_fraction'])} all-zero "
            f"samples, median |grad|_2 {s['l2_norm_percentiles']['p50']:.3g}")
    if own in masked or len(masked) == len(r.estimators):
        which = "every estimator" if len(masked) == len(r.estimators) else f"{', '.join(masked)}"
        return DiagnosticResult("input-gradients", "WARN", f"input gradients vanish under {which} ({text}): "
                                "gradient attacks are blind here", numbers)
    if masked:
        return DiagnosticResult("input-gradients", "PASS", f"{text}; masked under {', '.join(masked)} only "
                                "(other estimators see through)", numbers)
    return DiagnosticResult("input-gradients", "PASS", text, numbers)


# ----------------------------------------------------------------------------- (f)
def _rising(start: torch.Tensor, end: torch.Tensor) -> tuple[float, float, float, int]:
    """(rising fraction, mean start loss, mean end loss, samples attacked) for losses [m]."""
    rising, ran = _rising_mask(start, end)
    s, e = start[ran].double(), end[ran].double()
    if s.numel() == 0:
        return float("nan"), float("nan"), float("nan"), 0
    return (float(rising[ran].double().mean().item()), float(s.mean().item()), float(e.mean().item()),
            int(s.numel()))


def check_loss_rises(r: DiagnosticRunner) -> DiagnosticResult:
    run = iterative(r, r.more_steps)
    numbers: dict = {"chance_rising_fraction": CHANCE_RISING_FRACTION, "rise_rtol": LOSS_RISE_RTOL}
    if run.loss_start is None or run.loss_end is None:
        return DiagnosticResult("loss-rises", "SKIP", f"{_attacks(r)[0]} exposes no loss trace", numbers)
    sel = r.clean_correct
    frac, m0, m1, n = _rising(run.loss_start[sel], run.loss_end[sel])
    progress = loss_progress(run, sel)
    assert progress is not None
    numbers["pgd"] = {"steps": r.more_steps, "rising_fraction": frac, "rising": progress.to_dict(),
                      "mean_loss_start": m0, "mean_loss_end": m1, "n": n}
    suite = {}
    for aid, s, e in r.main_traces:
        f2, a0, a1, k = _rising(s, e)
        suite[aid] = {"rising_fraction": f2, "mean_loss_start": a0, "mean_loss_end": a1, "n": k}
    if suite:
        numbers["suite_attacks"] = suite
    if n == 0:
        return DiagnosticResult("loss-rises", "SKIP", "no correctly classified sample to attack", numbers)
    text = f"{iterative_name(r, r.more_steps)} loss {m0:.3g} -> {m1:.3g}, rising on {progress.percent()} of {n} samples"
    # Under loss noise (stochastic models) an attack that makes no progress still "rises" on
    # about half the samples, so only a majority that the interval separates from chance counts.
    if not progress.ci_low > CHANCE_RISING_FRACTION or not m1 > m0:
        return DiagnosticResult("loss-rises", "WARN", text + ": not clearly above the "
                                f"{_pct(CHANCE_RISING_FRACTION)} that loss noise alone gives — the attack makes no "
                                "progress on its own loss", numbers)
    return DiagnosticResult("loss-rises", "PASS", text, numbers)


# ----------------------------------------------------------------------------- registry
DIAGNOSTICS: dict[str, Callable[[DiagnosticRunner], DiagnosticResult]] = {
    "eps-to-zero": check_eps_to_zero,
    "iterative-beats-single": check_iterative_beats_single,
    "more-budget-helps": check_more_budget_helps,
    "damage-order": check_damage_order,
    "input-gradients": check_input_gradients,
    "loss-rises": check_loss_rises,
}


def run_diagnostics(runner: DiagnosticRunner, names: Optional[list[str]] = None) -> list[DiagnosticResult]:
    """Run the checks (all by default, in the order a-f). A check that cannot run (e.g. an
    attack refuses this threat model) is reported as SKIP with the reason, never dropped."""
    from ..errors import SnnRobustError

    out = []
    if int(runner.clean_correct.sum().item()) == 0:
        return [DiagnosticResult(name, "SKIP", f"no correctly classified sample among the {runner.n} diagnostic "
                                 "samples: nothing to attack", {}) for name in names or list(DIAGNOSTICS)]
    for name in names or list(DIAGNOSTICS):
        try:
            out.append(DIAGNOSTICS[name](runner))
        except SnnRobustError as e:
            out.append(DiagnosticResult(name, "SKIP", f"could not run: {e}", {}))
    return out


def overall_status(results: list[DiagnosticResult]) -> str:
    """WARN if any check warns, else PASS (SKIPs do not count), SKIP if nothing ran."""
    statuses = {r.status for r in results}
    if "WARN" in statuses:
        return "WARN"
    return "PASS" if "PASS" in statuses else "SKIP"
