"""Run a suite or one attack on a model and data: clean pass, attacks in batches, per-sample
worst case, eps sweep, masking diagnostics, timing -> :class:`EvaluationResult`.

What to run is an :class:`~snnrobust.evaluation.request.EvaluationRequest`, validated and with
the suite's defaults (eps, curve, diagnostics, cascade, budget) decided when it is built;
:func:`run_evaluation` runs its plan in stages (:func:`clean_pass` -> :class:`Session`,
:func:`main_pass`, :func:`eps_curve_pass`, :func:`diagnostics_pass`, :func:`assemble_result`).
:func:`evaluate` takes the request's fields as keywords.

``evaluate(model, x, y, suite="reliable", threat=ThreatModel("linf", 8/255))`` takes any
``nn.Module`` mapping images [B, C, H, W] in [0, 1] to logits [B, K] that follows the reset
convention (a snnrobust ``SpikingClassifier`` or a foreign module). Data ``x`` [N, C, H, W]
and labels ``y`` [N] are held in memory; attacks run in batches of ``batch_size`` through a
:class:`Victim` per (threat model, estimator, EOT), so that eval mode, state reset, the
attacker's estimator, EOT and voting apply to every attack alike.

Scoring: a sample is *robust* to an attack when it is classified correctly at the clean
point and at the attack's point (majority vote for stochastic models). Cascade suites attack
only samples still robust; the worst case is robust only if every attack failed.

Crashes: a batch that runs out of memory is retried in halves (down to one sample); what an
attack broke in its finished batches always counts. If it still crashes, the samples it never
attacked are listed in ``EvaluationResult.incomplete`` and ``result.complete`` is False: the
robust accuracy is then an upper bound, said in the table, the JSON and the report.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from ..environment import machine_info
from ..errors import ConfigError, SnnRobustError
from ..estimators import SourceANN, get_estimator
from ..spiking.functional import smoothable_encoders, spiking_neurons
from ..spiking.surrogates import Surrogate
from .batches import BatchOutcome, attack_batch, run_batches, seed_for
from .diagnostics import CHECK_ATTACKS, AttackRun, run_diagnostics
from .metrics import Rate, attack_success_rate, clean_accuracy, robust_accuracy
from ..attacks.registry import attack_budget, attack_options, get_attack
from .request import EvaluationPlan, EvaluationRequest
from .results import AttackRecord, CurvePoint, EvaluationResult, WorstCase, failure_reason, json_ready
from .suites import AttackSpec, Budget, SuiteContext, assign_ids, expand, own_estimator
from .threat import ThreatModel
from .victim import Victim

#: Slack allowed when checking that a returned point lies in the eps ball and bounds.
BALL_SLACK = 1e-5
#: Kinds of attack that use the target's own gradients (white-box).
WHITE_BOX = ("gradient", "single-step")


# ----------------------------------------------------------------------------- helpers
def _say(text: str) -> None:
    """A progress line on stderr that does not break the progress bars."""
    tqdm.write(text, file=sys.stderr)


def model_surrogate(model: nn.Module) -> tuple[bool, Optional[Surrogate]]:
    """(has spiking neurons, the surrogate they all share or None if mixed); two neurons
    share one when their canonical specs (:meth:`Surrogate.spec`) are equal."""
    neurons = spiking_neurons(model)
    if not neurons:
        return False, None
    shared = {n.surrogate.spec(): n.surrogate for n in neurons}
    return True, (next(iter(shared.values())) if len(shared) == 1 else None)


def describe_model(model: nn.Module) -> dict:
    d: dict[str, Any] = {"class": type(model).__name__}
    cfg = getattr(model, "config", None)
    if callable(getattr(cfg, "to_dict", None)):
        d["config"] = cfg.to_dict()
    d["parameters"] = int(sum(p.numel() for p in model.parameters()))
    return d


def _take(z: torch.Tensor, idx: torch.Tensor, bdim: int) -> torch.Tensor:
    return z.index_select(bdim, idx.to(z.device))


# ----------------------------------------------------------------------------- one attack run
@dataclass
class SpecRun:
    """One attack spec run on samples ``idx`` (all in batches)."""

    success: torch.Tensor                 # bool [len(idx)] (CPU)
    loss_start: Optional[torch.Tensor]    # [len(idx)] or None
    loss_end: Optional[torch.Tensor]
    trace_mean: Optional[list]            # mean loss per iterate over attacked samples
    attack: dict
    estimator: Optional[dict]
    eot: Optional[int]
    meta: dict
    time_s: float
    invalid: int = 0                      # returned points outside the ball/bounds (not counted)
    failed: Optional[torch.Tensor] = None  # bool [len(idx)]: samples never attacked (their batch crashed)
    errors: list = field(default_factory=list)  # one line per distinct error of the crashed batches
    gradient_images: int = 0              # images forwarded with an input-gradient graph (EOT passes each)
    forward_images: int = 0               # images forwarded without one (scoring, votes, queries)

    @property
    def n_failed(self) -> int:
        return 0 if self.failed is None else int(self.failed.sum().item())


class Session:
    """Shared state of one evaluation: the model, the clean points z0 [N, ...], labels, the
    clean-correct mask, what the clean pass learnt about the model (classes, the victim's
    input bounds, stochasticity, its spiking neurons' shared surrogate), and how to build
    victims and run attack specs in batches."""

    def __init__(self, model: nn.Module, z0: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, *,
                 vote: Optional[int], batch_size: int, device: Any, progress: bool, seed: int,
                 bdim: int, vote_used: int = 1, num_classes: int = 0, stochastic: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), has_spiking: bool = False,
                 own_surrogate: Optional[Surrogate] = None, source_ann: Optional[nn.Module] = None,
                 journal: Any = None) -> None:
        self.model, self.z0, self.y, self.correct = model, z0, y, correct
        #: a :class:`~snnrobust.store.journal.BatchJournal` (or None): finished batches are kept there
        self.journal = journal
        self.source_ann = source_ann  # bound to every source-ann estimator of this evaluation
        self.vote_used = vote_used  # the vote actually applied (the Victim's default when vote is None)
        self.vote, self.batch_size, self.device = vote, batch_size, device
        self.progress, self.seed, self.bdim = progress, seed, bdim
        self.num_classes, self.stochastic, self.bounds = num_classes, stochastic, bounds
        self.has_spiking, self.own_surrogate = has_spiking, own_surrogate
        #: perturbed entries per sample (the eps-ball check's dimension)
        self.dims = int(z0.numel() // max(correct.numel(), 1))

    def victim(self, threat: ThreatModel, estimator: Any = None, eot: Optional[int] = None) -> Victim:
        if estimator is not None:
            estimator = get_estimator(estimator)
            if isinstance(estimator, SourceANN):
                estimator = estimator.bound(self.source_ann)
        return Victim(self.model, threat, estimator=estimator, eot=eot, vote=self.vote, device=self.device)

    def build_attack(self, spec: AttackSpec):
        opts = dict(spec.options)
        if "seed" in attack_options(spec.attack) and "seed" not in opts:
            opts["seed"] = seed_for(self.seed, spec.id or spec.attack) % 100_000
        return get_attack(spec.attack, **opts)

    def run(self, spec: AttackSpec, threat: ThreatModel, idx: torch.Tensor, desc: str = "") -> SpecRun:
        """Run ``spec`` on samples ``idx`` in fixed batches of ``batch_size``
        (:func:`~snnrobust.evaluation.batches.run_batches`: each batch seeded by its position,
        shared out across processes, journalled when the session has a journal).

        A batch that runs out of memory (:func:`_is_oom`) is retried as two halves, recursively
        down to one sample, so a too-large ``batch_size`` only costs time. A batch that still
        fails (an error at one sample, or any other RuntimeError/ValueError/IndexError inside the
        attack's code) is recorded in ``SpecRun.failed`` / ``errors`` and the remaining batches
        still run: what finished batches broke is always kept, and the caller decides how to
        report the samples that were never attacked. :class:`SnnRobustError` (a user error)
        propagates at once."""
        idx = idx.to(torch.long).cpu()
        attack = self.build_attack(spec)
        victim = self.victim(threat, spec.estimator, spec.eot)
        n = idx.numel()
        t0 = time.perf_counter()
        bar = tqdm(total=n, desc=(desc or spec.id)[:40], unit="img", leave=False, disable=not self.progress)

        def attack_one(b: torch.Tensor) -> tuple:
            zb = _take(self.z0, b, self.bdim).to(victim.device)
            yb = self.y[b].to(victim.device)
            res = attack.run(victim, zb, yb, keys=b)
            ok = self._valid(victim, res.z_adv, zb)
            trace = res.loss_trace.detach().float().cpu() if res.loss_trace is not None else None
            meta = {k: v for k, v in res.meta.items() if k != "victim"}
            return (res.success.detach().cpu().to(torch.bool) & ok, trace, meta, int((~ok).sum().item()))

        def compute(b: torch.Tensor) -> BatchOutcome:
            g0, f0, nf0 = victim.gradient_images, victim.forward_images, victim.nonfinite_samples
            out = attack_batch(b, attack_one, _is_oom, _free_cached_memory, _first_line)
            out.gradient_images, out.forward_images = victim.gradient_images - g0, victim.forward_images - f0
            out.nonfinite = victim.nonfinite_samples - nf0
            out.meta = json_ready(out.meta)
            return out

        try:
            outcomes = run_batches(idx, self.batch_size, compute,
                                   lambda b: seed_for(self.seed, spec.id, threat.eps, "batch", int(b[0])),
                                   self.model, self.journal, (spec.id, float(threat.eps)), bar.update)
        finally:
            bar.close()
        return self._merge(outcomes, n, attack, victim, spec, time.perf_counter() - t0)

    @staticmethod
    def _merge(outcomes: list[BatchOutcome], n: int, attack: Any, victim: Victim, spec: AttackSpec,
               time_s: float) -> SpecRun:
        """The :class:`SpecRun` of the batches' outcomes (in batch order)."""
        success = torch.tensor([v for o in outcomes for v in o.success], dtype=torch.bool)
        failed = torch.tensor([v for o in outcomes for v in o.failed], dtype=torch.bool)
        if success.numel() != n:
            raise RuntimeError(f"the batches hold {success.numel()} outcomes for {n} samples")
        have_trace = any(o.loss_start is not None for o in outcomes)
        start = torch.full((n,), math.nan)
        end = torch.full((n,), math.nan)
        trace_sum: Optional[torch.Tensor] = None
        errors: list[str] = []
        oom_sizes: list[int] = []
        meta: dict = {}
        lo = 0
        for o in outcomes:
            hi = lo + len(o.success)
            if o.loss_start is not None:
                start[lo:hi] = torch.tensor(o.loss_start)
                end[lo:hi] = torch.tensor(o.loss_end)
            if o.trace_sum is not None:
                t = torch.tensor(o.trace_sum)
                trace_sum = t if trace_sum is None else (trace_sum + t if trace_sum.shape == t.shape else trace_sum)
            errors += [e for e in o.errors if e not in errors]
            oom_sizes += o.oom_sizes
            meta = meta or dict(o.meta)
            lo = hi
        trace_count = sum(o.trace_count for o in outcomes)
        trace_mean = (trace_sum / max(trace_count, 1)).tolist() if trace_sum is not None else None
        nonfinite = sum(o.nonfinite for o in outcomes)
        if nonfinite:
            meta["nonfinite_gradients"] = nonfinite
        if oom_sizes:
            meta["out_of_memory_retries"] = {"batch_sizes": sorted(set(oom_sizes), reverse=True),
                                             "smallest_tried": min(oom_sizes) // 2 or 1}
        return SpecRun(success=success, loss_start=start if have_trace else None, loss_end=end if have_trace else None,
                       trace_mean=trace_mean, attack=json_ready(attack.to_dict()),
                       estimator=victim.estimator.to_dict() if spec.estimator is not None else None,
                       eot=victim.eot, meta=json_ready(meta), time_s=time_s,
                       invalid=sum(o.invalid for o in outcomes), failed=failed, errors=errors,
                       gradient_images=sum(o.gradient_images for o in outcomes),
                       forward_images=sum(o.forward_images for o in outcomes))

    @staticmethod
    def _valid(victim: Victim, z_adv: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """bool [B]: the point lies in the eps ball around z0 and in the victim's bounds. A point
        that does not (an attack bug) is not counted as a success."""
        if z_adv.shape != z0.shape:
            raise RuntimeError(f"attack returned points of shape {list(z_adv.shape)} for inputs {list(z0.shape)}")
        th = victim.threat
        dist = th.distance(z_adv.detach().float(), z0.detach().float()).cpu()
        in_ball = dist <= th.eps * (1 + BALL_SLACK) + BALL_SLACK
        lo, hi = victim.bounds
        bd = victim.batch_dim
        flat = z_adv.detach().movedim(bd, 0).reshape(z_adv.shape[bd], -1)
        in_bounds = ((flat >= lo - BALL_SLACK) & (flat <= hi + BALL_SLACK)).all(1).cpu()
        return in_ball & in_bounds


def ball_covers_everything(norm: str, eps: float, bounds: tuple[float, float], dims: int) -> Optional[str]:
    """A warning when an eps ball holds every valid input: L-inf eps >= hi - lo, or L2 eps >=
    (hi - lo) * sqrt(dims) (the diagonal of the box [lo, hi]^dims), so that any input of another
    class is a valid "adversarial" point and robust accuracy says nothing about the model. None
    otherwise. ``bounds`` is the victim's (lo, hi); ``dims`` the perturbed entries per sample."""
    span = float(bounds[1]) - float(bounds[0])
    if norm == "l0":
        if eps < dims:
            return None
        return (f"WARNING: L0 budget {eps:g} >= {dims} slots per sample: every binary input is reachable, so robust "
                f"accuracy here says nothing about the model")
    if norm == "linf":
        if eps < span:
            return None
        hint = f"; did you mean {eps:g}/255?" if 1 <= eps <= 255 and span == 1 else ""
        return (f"WARNING: L-inf eps={eps:g} >= {span:g}, the whole valid range [{bounds[0]:g}, {bounds[1]:g}]: every "
                f"input lies in the ball, so robust accuracy here says nothing about the model{hint}")
    diag = span * math.sqrt(max(dims, 1))
    if eps < diag:
        return None
    return (f"WARNING: L2 eps={eps:g} >= {diag:.4g}, the diagonal of the valid box "
            f"[{bounds[0]:g}, {bounds[1]:g}]^{dims}: every input lies in the ball, so robust accuracy here says "
            f"nothing about the model")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def _is_oom(e: BaseException) -> bool:
    """Whether ``e`` says the device (or the host) ran out of memory: torch.OutOfMemoryError
    (CUDA), a RuntimeError whose message says so (MPS, older torch, the CPU allocator), or a
    Python MemoryError. Only these are worth retrying with a smaller batch."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(e, MemoryError) or (oom_type is not None and isinstance(e, oom_type)):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text


def _free_cached_memory() -> None:
    """Hand the caching allocator's free blocks back before retrying a smaller batch."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _failed_run(session: Session, spec: AttackSpec, threat: ThreatModel, idx: torch.Tensor,
                e: BaseException) -> SpecRun:
    """The record of an attack that failed before attacking any batch (e.g. while it was built):
    every sample of ``idx`` is marked not attacked."""
    try:
        attack = json_ready(session.build_attack(spec).to_dict())
    except Exception:  # noqa: BLE001 - only for the record
        attack = {"name": spec.attack}
    return SpecRun(success=torch.zeros(idx.numel(), dtype=torch.bool), loss_start=None, loss_end=None,
                   trace_mean=None, attack=attack, estimator=None, eot=spec.eot,
                   meta={}, time_s=0.0, failed=torch.ones(idx.numel(), dtype=torch.bool), errors=[_first_line(e)])


# ----------------------------------------------------------------------------- one pass of a suite
@dataclass
class PassOutcome:
    records: list[AttackRecord]
    robust: torch.Tensor                 # bool [N] worst case
    whitebox_robust: torch.Tensor        # bool [N] after white-box attacks only
    broken_by: list                      # per sample: id | "clean" | carried label | None
    blackbox_only: dict                  # black-box id -> samples it broke that no white-box attack did
    traces: list = field(default_factory=list)   # [(id, idx, loss_start, loss_end)]
    failures: list = field(default_factory=list)  # one dict per attack that left samples unattacked


def run_pass(session: Session, specs: list[AttackSpec], threat: ThreatModel, *, cascade: bool,
             initial_robust: Optional[torch.Tensor] = None, initial_label: str = "",
             sample_idx: Optional[torch.Tensor] = None) -> PassOutcome:
    """Run ``specs`` in order on the samples ``sample_idx`` (default: all) and combine per sample.

    cascade: each attack runs only on samples still robust (its record is cumulative);
    otherwise each runs on every initially-correct sample (its record is standalone).

    An attack that crashes on some batches (after :meth:`Session.run`'s out-of-memory retries)
    keeps what it broke in the others; the samples it never attacked are listed in
    ``failures`` (``{"attack", "eps", "error", "not_attacked": [sample index], "n_not_attacked",
    "counted_robust"}``, the last being how many of them the worst case still counts robust,
    i.e. by how much the robust accuracy may be too high), never silently counted as robust."""
    N = session.correct.numel()
    sel = torch.ones(N, dtype=torch.bool) if sample_idx is None else torch.zeros(N, dtype=torch.bool).index_fill_(
        0, sample_idx, True)
    correct = session.correct & sel
    robust = correct.clone() if initial_robust is None else (correct & initial_robust)
    broken_by: list = [None] * N
    for i in range(N):
        if sel[i] and not session.correct[i]:
            broken_by[i] = "clean"
        elif correct[i] and not robust[i]:
            broken_by[i] = initial_label or "earlier"
    wb_broken = torch.zeros(N, dtype=torch.bool)
    bb_broken: dict[str, torch.Tensor] = {}
    records, traces, failures = [], [], []
    n_sel = int(sel.sum().item())
    for spec in specs:
        idx = (robust if cascade else correct).nonzero().squeeze(1)
        try:
            run = session.run(spec, threat, idx)
        except SnnRobustError:
            raise
        except (RuntimeError, ValueError, IndexError, MemoryError) as e:
            # Failed before its first batch (building the attack or its victim): no sample was
            # attacked. The other attacks' work is kept; the result is marked incomplete.
            run = _failed_run(session, spec, threat, idx, e)
        newly = idx[run.success]
        if cascade:
            robust[newly] = False
            this_robust = robust.clone()
        else:
            this_robust = correct.clone()
            this_robust[newly] = False
            robust &= this_robust
        for j in newly.tolist():
            if broken_by[j] is None:
                broken_by[j] = spec.id
        if spec.kind in WHITE_BOX:
            wb_broken[newly] = True
        else:
            m = torch.zeros(N, dtype=torch.bool)
            m[newly] = True
            bb_broken[spec.id] = m
        if run.loss_start is not None:
            traces.append((spec.id, idx, run.loss_start, run.loss_end))
        steps, restarts = attack_budget(run.attack)  # read through the options the class declares
        meta = dict(run.meta)
        if run.invalid:
            meta["invalid_points_not_counted"] = run.invalid
        n_failed = run.n_failed
        if n_failed:
            error = "; ".join(run.errors)
            meta["error"] = error
            meta["not_attacked"] = n_failed
            failures.append({"attack": spec.id, "eps": float(threat.eps), "error": error,
                             "not_attacked": idx[run.failed].tolist(), "n_not_attacked": n_failed,
                             "n_scheduled": int(idx.numel())})
        records.append(AttackRecord(
            id=spec.id, attack=run.attack, estimator=run.estimator, eot=run.eot, vote=session.vote_used,
            steps=steps, restarts=restarts, kind=spec.kind, scope="cumulative" if cascade else "standalone",
            robust_accuracy=Rate(int(this_robust[sel].sum().item()), n_sel),
            attack_success_rate=attack_success_rate(correct[sel], this_robust[sel]),
            n_attacked=int(idx.numel()) - n_failed, n_broken=int(newly.numel()), time_s=round(run.time_s, 3),
            loss_trace_mean=run.trace_mean, meta=meta, gradient_images=run.gradient_images,
            forward_images=run.forward_images, broken=newly.tolist()))
        if session.progress:
            _say(f"  {spec.id}: attacked {idx.numel() - n_failed}, broke {newly.numel()}, "
                 f"robust {records[-1].robust_accuracy.percent()} ({run.time_s:.1f}s)"
                 + (f"; FAILED on {n_failed} samples ({'; '.join(run.errors)})" if n_failed else ""))
    # how far the worst case may be too high: unattacked samples that no other attack broke
    for f in failures:
        f["counted_robust"] = int(robust[torch.tensor(f["not_attacked"], dtype=torch.long)].sum().item())
    wb_robust = correct & ~wb_broken
    if initial_robust is not None:
        wb_robust &= initial_robust
    blackbox_only = {k: int((m & wb_robust).sum().item()) for k, m in bb_broken.items()}
    return PassOutcome(records, robust, wb_robust, broken_by, blackbox_only, traces, failures)


# ----------------------------------------------------------------------------- diagnostics runner
class _DiagRunner:
    """Implements :class:`~snnrobust.evaluation.diagnostics.DiagnosticRunner` on the first
    ``budget.diag_n`` samples, with the model's own estimator (the suite's first)."""

    def __init__(self, session: Session, threat: ThreatModel, budget: Budget, estimators: list[str],
                 eot: Optional[int], transfer: Optional[AttackSpec], main: Optional[PassOutcome],
                 bounds: tuple[float, float]) -> None:
        N = session.correct.numel()
        self.session, self.threat, self.budget = session, threat, budget
        self.sub = torch.arange(min(budget.diag_n, N))
        self.n = int(self.sub.numel())
        self.bounds = bounds
        self.z_dims = int(session.z0.numel() // max(N, 1))
        self.z_shape = tuple(s for d, s in enumerate(session.z0.shape) if d != session.bdim)
        self.clean_correct = session.correct[self.sub]
        self.estimators = estimators
        self.eot = eot
        self.steps, self.more_steps = budget.diag_steps, budget.diag_more_steps
        self.restarts, self.noise_draws = budget.diag_restarts, budget.diag_noise_draws
        self._transfer = transfer
        self.has_transfer = transfer is not None
        self.main_robust = main.robust[self.sub] if main is not None else None
        self.main_whitebox_robust = main.whitebox_robust[self.sub] if main is not None else None
        self.main_blackbox_only = None
        self.main_n = N
        self.main_traces = []
        if main is not None:
            in_sub = torch.zeros(N, dtype=torch.bool)
            in_sub[self.sub] = True
            self.main_blackbox_only = {}
            for aid, idx, s, e in main.traces:
                keep = in_sub[idx]
                if keep.any():
                    self.main_traces.append((aid, s[keep], e[keep]))
            # black-box successes that no gradient attack had, over all evaluated samples
            self.main_blackbox_only = dict(main.blackbox_only)
        self._cache: dict = {}

    def _to_run(self, spec: AttackSpec, threat: ThreatModel) -> AttackRun:
        idx = self.sub[self.clean_correct]
        run = self.session.run(spec, threat, idx, desc=f"diag {spec.id}")
        if run.n_failed:  # a check on partly attacked samples could PASS for the wrong reason: SKIP it
            raise SnnRobustError(f"attack {spec.id} failed on {run.n_failed} of {idx.numel()} samples "
                                 f"({'; '.join(run.errors)})")
        robust = self.clean_correct.clone()
        pos = torch.nonzero(self.clean_correct).squeeze(1)
        robust[pos[run.success]] = False
        start = end = None
        if run.loss_start is not None:
            start = torch.full((self.n,), math.nan)
            end = torch.full((self.n,), math.nan)
            start[pos] = run.loss_start
            end[pos] = run.loss_end
        return AttackRun(robust=robust, loss_start=start, loss_end=end, meta=run.meta)

    def attack(self, name: str, options: dict, eps: Optional[float] = None) -> AttackRun:
        eps = float(self.threat.eps) if eps is None else float(eps)
        key = (name, tuple(sorted(options.items())), round(eps, 12))
        if key not in self._cache:
            threat = self.threat.with_eps(eps)
            estimator = None if name == "noise" else self.estimators[0]
            kind = "noise" if name == "noise" else "gradient"
            label = f"{name}({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})@eps={eps:.3g}"
            spec = AttackSpec(name, dict(options), estimator, None if name == "noise" else self.eot, kind, id=label)
            self._cache[key] = self._to_run(spec, threat)
        return self._cache[key]

    def transfer(self) -> Optional[AttackRun]:
        if self._transfer is None:
            return None
        if "transfer" not in self._cache:
            self._cache["transfer"] = self._to_run(self._transfer, self.threat)
        return self._cache["transfer"]

    def gradients(self, estimator: str, loss: str) -> torch.Tensor:
        s = self.session
        victim = s.victim(self.threat, estimator, self.eot)
        out = []
        torch.manual_seed(seed_for(s.seed, "gradients", estimator))
        for lo in range(0, self.n, s.batch_size):
            b = self.sub[lo:lo + s.batch_size]
            zb = _take(s.z0, b, s.bdim).to(victim.device)
            victim.estimator.reset()
            with victim.keyed(seed_for(s.seed, "gradients", estimator), b):
                _, g = victim.grad(zb, s.y[b].to(victim.device), loss=loss)
            out.append(g.detach().movedim(s.bdim, 0).cpu())
        return torch.cat(out, 0)


# ----------------------------------------------------------------------------- the stages
def check_data(x: Any, y: Any) -> torch.Tensor:
    """Labels [N] as a CPU long tensor, after checking that ``x`` holds N >= 1 images and ``y``
    one label per image (one-line ConfigError otherwise)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ConfigError("x must be a tensor of images [N, C, H, W] with pixels in [0, 1]")
    y = torch.as_tensor(y).long().cpu()
    if y.dim() != 1 or y.numel() != x.shape[0]:
        raise ConfigError(f"y must hold one label per image: x has {x.shape[0]} images, y has shape {list(y.shape)}")
    if x.shape[0] == 0:
        raise ConfigError("nothing to evaluate: the data has no samples")
    return y


def clean_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: EvaluationPlan,
               journal: Any = None) -> Session:
    """Stage 1: encode and classify every sample at its clean point (in batches) and learn what
    the attacks need about the model (classes, bounds, stochasticity, its surrogate)."""
    base = Victim(model, plan.threat, vote=plan.vote, device=plan.device)
    bdim = base.batch_dim
    zs, preds, k_classes = [], [], None
    draw_seed = seed_for(plan.seed, "clean")
    for lo in range(0, x.shape[0], plan.batch_size):
        xb = x[lo:lo + plan.batch_size]
        # a sample's encoding (perturb=spikes) and vote draw from its own key, whatever the batch
        with base.keyed(draw_seed, torch.arange(lo, lo + xb.shape[0])):
            zb = base.start(xb)
            preds.append(base.predict(zb).cpu())
        if k_classes is None:  # only the logits' shape is used
            k_classes = int(base.logits(zb.narrow(bdim, 0, 1)).shape[-1])
        zs.append(zb.detach().cpu())
    z0 = torch.cat(zs, bdim)
    correct = torch.cat(preds) == y
    if y.max().item() >= k_classes or y.min().item() < 0:
        raise ConfigError(f"labels must be in 0..{k_classes - 1} (the model has {k_classes} classes), "
                          f"got {y.min().item()}..{y.max().item()}")
    has_spiking, own_sg = model_surrogate(model)
    return Session(model, z0, y, correct, vote=plan.vote, batch_size=plan.batch_size, device=plan.device,
                   progress=plan.progress, seed=plan.seed, bdim=bdim, vote_used=base.vote, num_classes=k_classes,
                   stochastic=base.stochastic, bounds=base.bounds, has_spiking=has_spiking, own_surrogate=own_sg,
                   source_ann=plan.source_ann, journal=journal)


def suite_context(plan: EvaluationPlan, threat: ThreatModel, *, has_spiking: bool, own_surrogate: Optional[Surrogate],
                  stochastic: bool, num_classes: int, not_applicable: Optional[dict] = None,
                  smooth_encoder: bool = False) -> SuiteContext:
    """What a suite needs to expand itself at ``threat``: the plan's settings and the model's."""
    return SuiteContext(budget=plan.budget, threat=threat, own_surrogate=own_surrogate, has_spiking=has_spiking,
                        stochastic=stochastic, num_classes=num_classes, transfer_sources=plan.transfer_sources,
                        estimators=plan.estimators, eot=plan.eot, replicate_seed_code=plan.replicate_seed_code,
                        source_ann=plan.source_ann_label if plan.source_ann is not None else None,
                        not_applicable=dict(not_applicable or {}), smooth_encoder=smooth_encoder)


def session_context(session: Session, plan: EvaluationPlan, threat: ThreatModel) -> SuiteContext:
    # a wrapped foreign model (snnrobust.wrap) names the estimators its neurons cannot take
    limits = getattr(session.model, "estimator_limits", None)
    return suite_context(plan, threat, has_spiking=session.has_spiking, own_surrogate=session.own_surrogate,
                         stochastic=session.stochastic, num_classes=session.num_classes,
                         not_applicable=limits if isinstance(limits, dict) else None,
                         smooth_encoder=bool(smoothable_encoders(session.model)))


def single_attack_specs(plan: EvaluationPlan, ctx: SuiteContext) -> list[AttackSpec]:
    """The spec list of the plan's single attack (one spec per estimator for gradient attacks);
    its options, kind and sources were settled by the request."""
    opts, kind = dict(plan.attack_options), plan.attack_kind
    if kind == "transfer":
        labels = ",".join(label for label, _ in ctx.transfer_sources)
        return [AttackSpec("transfer", opts, None, None, "transfer", id=f"transfer[{labels}]")]
    if kind in ("score", "noise"):
        return [AttackSpec(plan.attack, opts, None, ctx.gradient_eot(), kind)]
    ests = list(plan.estimators) if plan.estimators else [own_estimator(ctx)]
    return [AttackSpec(plan.attack, opts, e, ctx.gradient_eot(), kind) for e in ests]


def attack_specs(plan: EvaluationPlan, ctx: SuiteContext) -> list[AttackSpec]:
    """The ordered attack list of the plan (its suite expanded, or its single attack) for the
    model and threat model ``ctx`` describes, each with a unique id."""
    if plan.suite is not None:
        return expand(plan.suite, ctx)
    return assign_ids(single_attack_specs(plan, ctx))


def main_pass(session: Session, plan: EvaluationPlan, specs: list[AttackSpec]) -> tuple[PassOutcome, list[str]]:
    """Stage 2: every attack at the plan's eps (cascading or not); (outcome, notes on retries
    and overflowed gradients)."""
    main = run_pass(session, specs, plan.threat, cascade=plan.cascade)
    notes = []
    for rec in main.records:
        retried = rec.meta.get("out_of_memory_retries")
        if retried:
            notes.append(f"attack {rec.id} ran out of memory at batch size {retried['batch_sizes'][0]}; those "
                         f"batches were retried in halves (down to {retried['smallest_tried']})")
        if rec.meta.get("nonfinite_gradients"):
            notes.append(f"attack {rec.id}: {rec.meta['nonfinite_gradients']} input gradients overflowed; their "
                         "non-finite entries were replaced by the limit direction (sign of inf, NaN -> 0)")
    return main, notes


def eps_curve_pass(session: Session, plan: EvaluationPlan, main: PassOutcome, specs: list[AttackSpec],
                   main_covers_all: bool) -> tuple[list[CurvePoint], list[dict], list[str]]:
    """Stage 3: robust accuracy at each eps of the plan's curve (the main pass is reused at its
    own eps); (curve, failures of the extra passes, notes). Under a cascade, samples broken at
    a smaller eps count as broken at larger ones and are not attacked again."""
    threat = plan.threat
    curve: list[CurvePoint] = []
    failures: list[dict] = []
    notes: list[str] = []
    carried: Optional[torch.Tensor] = None
    carried_from = ""
    for e in plan.eps_curve:
        if abs(e - threat.eps) < 1e-12:
            outcome = main
        else:
            th = threat.with_eps(e)
            ctx_e = session_context(session, plan, th)
            ctx_e.budget = plan.budget.for_curve()
            specs_e = attack_specs(plan, ctx_e)
            if plan.progress:
                _say(f"eps sweep: {th.label()}")
            outcome = run_pass(session, specs_e, th, cascade=plan.cascade,
                               initial_robust=carried if plan.cascade else None, initial_label=carried_from)
            failures.extend(outcome.failures)
        n_carried = 0 if carried is None or not plan.cascade or outcome is main else \
            int((session.correct & ~carried).sum().item())
        curve.append(CurvePoint(eps=e, robust_accuracy=robust_accuracy(outcome.robust),
                                attacks={r.id: r.robust_accuracy for r in outcome.records}, carried_over=n_carried))
        # a point that fools the model at eps also lies in every larger ball (same norm, same z0)
        carried = outcome.robust.clone()
        carried_from = f"broken at eps={e:.4g}"
    if plan.eps_curve and plan.cascade:
        notes.append("eps curve: samples broken at a smaller eps count as broken at larger ones "
                     "(the same point lies in the larger ball) and are not attacked again")
    b, c = plan.budget, plan.budget.for_curve()
    if c is not b and plan.suite is not None and any(abs(e - threat.eps) >= 1e-12 for e in plan.eps_curve):
        notes.append(f"eps curve: the points other than the main eps ran with {c.steps} steps per attack and "
                     f"{c.square_queries} Square queries ({b.steps} and {b.square_queries} at eps={threat.eps:.4g}), "
                     "so they are looser upper bounds")
    covering = [e for e in plan.eps_curve if ball_covers_everything(threat.norm, e, session.bounds, session.dims)]
    if covering and not main_covers_all:
        notes.append(f"WARNING: the eps curve's points {', '.join(f'{e:g}' for e in covering)} hold every valid "
                     "input in their ball, so robust accuracy there says nothing about the model")
    return curve, failures, notes


def diagnostics_pass(session: Session, plan: EvaluationPlan, specs: list[AttackSpec], main: PassOutcome,
                     ctx: SuiteContext) -> tuple[list, list[str]]:
    """Stage 4: the masking diagnostics (when the plan runs them) on the first ``diag_n``
    samples, and notes on what was not run."""
    if not plan.diagnostics:
        return [], []
    # The checks attack with the suite's most successful estimator (the one the reported
    # number rests on; ties -> the earlier, i.e. the model's own) and measure all of them.
    broke: dict[str, int] = {}
    for s_, rec in zip(specs, main.records):
        if s_.kind in WHITE_BOX and s_.estimator is not None:
            broke[s_.estimator] = broke.get(s_.estimator, 0) + rec.n_broken
    ests = sorted(broke, key=lambda e: -broke[e]) if broke else [own_estimator(ctx)]
    b = plan.budget
    transfer_spec = next((s for s in specs if s.kind == "transfer"), None)
    if transfer_spec is None and plan.transfer_sources:
        inner = CHECK_ATTACKS[plan.threat.norm][0]  # the threat model's iterative attack, crafted on the sources
        transfer_spec = AttackSpec("transfer", {"sources": [m for _, m in plan.transfer_sources], "inner": inner,
                                                "inner_options": {"steps": b.transfer_steps}},
                                   None, None, "transfer", id="transfer")
    if plan.progress:
        _say(f"masking diagnostics on {min(b.diag_n, session.correct.numel())} samples")
    runner = _DiagRunner(session, plan.threat, b, ests, ctx.gradient_eot(), transfer_spec, main, session.bounds)
    return run_diagnostics(runner), []


def assemble_result(model: nn.Module, session: Session, plan: EvaluationPlan, specs: list[AttackSpec],
                    ctx: SuiteContext, main: PassOutcome, curve: list[CurvePoint], diagnostics: list,
                    failures: list[dict], notes: list[str], timing: dict[str, float],
                    total_s: float) -> EvaluationResult:
    """Stage 5: the :class:`EvaluationResult` (worst case, records, curve, diagnostics; the
    reasons of an incomplete run first in the notes)."""
    correct = session.correct
    incomplete = [dict(f, reason=failure_reason(f, correct.numel())) for f in failures]
    notes = [f["reason"] for f in incomplete] + notes  # first: the most important thing to read
    if incomplete and plan.progress:
        _say(f"INCOMPLETE: {len(incomplete)} attack run(s) left samples unattacked; see the notes")
    broken_counts = {s.id: sum(1 for v in main.broken_by if v == s.id) for s in specs}
    worst = WorstCase(robust_accuracy=robust_accuracy(main.robust),
                      attack_success_rate=attack_success_rate(correct, main.robust),
                      broken_by=broken_counts, per_sample=list(main.broken_by))
    suite = plan.suite
    protocol = {"suite": suite.name if suite else None,
                "description": suite.description if suite else f"single attack {plan.attack}",
                "cascade": plan.cascade,
                "estimators": list(dict.fromkeys(s.estimator for s in specs if s.estimator)),
                "attack_ids": [s.id for s in specs]}
    minfo = dict(plan.model_info) if plan.model_info else describe_model(model)
    dinfo = dict(plan.data_info or {})
    dinfo.setdefault("n", int(correct.numel()))
    return EvaluationResult(
        model=minfo, data=dinfo, threat_model=plan.threat, suite=suite.name if suite else None,
        attack=plan.attack if suite is None else None, budget=plan.budget, seed=plan.seed,
        clean=clean_accuracy(correct), vote=session.vote_used, eot=ctx.gradient_eot(), stochastic=session.stochastic,
        attacks=main.records, worst_case=worst, eps_curve=curve, diagnostics=diagnostics,
        replication=list(plan.replication), notes=notes, protocol=protocol, timing_s=round(total_s, 3),
        incomplete=incomplete, timing_breakdown_s={k: round(v, 3) for k, v in timing.items()},
        machine=machine_info(plan.device if plan.device is not None else next(
            (p.device for p in model.parameters()), "cpu")))


# ----------------------------------------------------------------------------- the entry points
def run_evaluation(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   request: "EvaluationRequest | EvaluationPlan", journal: Any = None) -> EvaluationResult:
    """Evaluate ``model`` on images ``x`` [N, C, H, W] in [0, 1] with labels ``y`` [N] as a
    validated ``request`` (or its plan) says: clean pass, attacks, eps curve, diagnostics,
    result. See :func:`evaluate` for the meaning of the settings and of ``result.complete``.

    Under torchrun (:mod:`snnrobust.distributed` initialised) every process calls this with the
    same arguments: each attacks its share of every attack's batches and all of them return the
    same result. ``journal`` (a :class:`~snnrobust.store.journal.BatchJournal`) keeps every
    finished batch, so that a re-run after an interruption attacks only what is missing."""
    plan = request.plan if isinstance(request, EvaluationRequest) else request
    if getattr(getattr(model, "encoder", None), "name", None) == "frames" and plan.threat.domain == "images":
        # the model reads event frames: say so wherever the threat model is described
        plan = dataclasses.replace(plan, threat=dataclasses.replace(plan.threat, domain="event-frames"))
    t_start = time.perf_counter()
    y = check_data(x, y)
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    session = clean_pass(model, x, y, plan, journal)
    timing["clean"] = time.perf_counter() - t0

    threat = plan.threat
    ctx = session_context(session, plan, threat)
    specs = attack_specs(plan, ctx)
    notes = list(plan.budget_notes) + ctx.notes
    reach = ball_covers_everything(threat.norm, float(threat.eps), session.bounds, session.dims)
    if reach:
        notes.insert(0, reach)
        if plan.progress:
            _say(reach)
    if plan.progress:
        _say(f"{threat.label()} | {plan.name} | budget {plan.budget.name} | "
             f"{x.shape[0]} samples, clean accuracy {clean_accuracy(session.correct).percent()}")

    t0 = time.perf_counter()
    main, more = main_pass(session, plan, specs)
    notes += more
    failures = list(main.failures)
    timing["attacks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    curve, more_failures, more = eps_curve_pass(session, plan, main, specs, main_covers_all=bool(reach))
    failures += more_failures
    notes += more
    timing["eps_sweep"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    diag, more = diagnostics_pass(session, plan, specs, main, ctx)
    notes += more
    timing["diagnostics"] = time.perf_counter() - t0

    return assemble_result(model, session, plan, specs, ctx, main, curve, diag, failures, notes, timing,
                           time.perf_counter() - t_start)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, suite: Optional[str] = None,
             attack: Optional[str] = None, attack_options: Optional[dict] = None,
             threat: "ThreatModel | dict | None" = None, budget: "str | Budget" = "quick",
             estimators: Optional[Iterable[str]] = None, eot: Optional[int] = None, vote: Optional[int] = None,
             steps: Optional[int] = None, restarts: Optional[int] = None, batch_size: int = 256,
             eps_sweep: Optional[Iterable[Any]] = None, transfer_sources: Any = None, progress: bool = True,
             seed: int = 0, diagnostics: Optional[bool] = None, replicate_seed_code: bool = False,
             model_info: Optional[dict] = None, data_info: Optional[dict] = None,
             device: Any = None, source_ann: Any = None, journal: Any = None) -> EvaluationResult:
    """Evaluate ``model`` on images ``x`` [N, C, H, W] in [0, 1] with labels ``y`` [N]:
    ``run_evaluation(model, x, y, EvaluationRequest(**keywords))``.

    Give exactly one of ``suite`` (a name from ``SUITES``) or ``attack`` (a name from
    ``ATTACKS``, with ``attack_options``). ``threat`` defaults to the suite's protocol eps
    (seed suites) or L-inf 8/255 (also where ``threat`` is a mapping without ``eps``).
    ``estimators`` (specs) replace the suite's list; ``eot``, ``steps``, ``restarts`` override
    the budget; ``vote`` sets the forward passes per prediction (default 1, or 10 for
    stochastic models). ``eps_sweep`` (values or "8/255" strings) adds the robustness curve (a
    suite's own default curve when None; ``[]`` for none). ``diagnostics`` defaults to on for
    the reliable suite. ``replicate_seed_code`` (seed-luu2025 only) perturbs spikes, crafts
    with BN in train mode and lets PGD abort at gradient norm < 1e-6, labelled in the result.

    Check ``result.complete``: it is False when an attack crashed on some samples even at
    batch size 1 (``result.incomplete`` says which attack, which samples and the error); the
    robust accuracy is then an upper bound (the CLI exits non-zero). An eps ball that holds
    every valid input (L-inf eps >= 1 on pixels) gives a ``WARNING`` note.

    ``source_ann``: the source ANN of a converted or hybrid SNN (an ``nn.Module``, or the
    checkpoint's ``ann_source`` mapping): the ``source-ann`` estimator (BPDA: forward through the
    SNN, backward through the ANN) needs it, and the reliable suite adds that estimator when it
    is given.

    ``journal``: a :class:`~snnrobust.store.journal.BatchJournal` that keeps every finished
    batch (resume after an interruption, also under torchrun: see :func:`run_evaluation`)."""
    request = EvaluationRequest(
        suite=suite, attack=attack, attack_options=attack_options, threat=threat, budget=budget,
        estimators=estimators, eot=eot, vote=vote, steps=steps, restarts=restarts, batch_size=batch_size,
        eps_sweep=eps_sweep, transfer_sources=transfer_sources, progress=progress, seed=seed,
        diagnostics=diagnostics, replicate_seed_code=replicate_seed_code, model_info=model_info,
        data_info=data_info, device=device, source_ann=source_ann)
    return run_evaluation(model, x, y, request, journal=journal)
