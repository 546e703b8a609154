"""AutoAttack's attacks through the official code (PyPI ``pyautoattack``, Croce & Hein 2020):
APGD-CE, APGD-DLR (both in AutoAttack's "rand" version), APGD-T (targeted DLR), FAB-T and
Square (``square-aa``; the suites use snnrobust's :mod:`~snnrobust.attacks.square`, which
draws per sample).

Random draws are per sample: each inner run's random start comes from the sample's key
(:func:`apgd_start` handed to APGD as ``x_init``; FAB's restarts draw through
:func:`_fab_draws`), and the rows of every batch handed to the official code are declared to
the victim, so a stochastic victim's passes are keyed per sample too
(:meth:`~snnrobust.evaluation.victim.Victim.keyed`). A sample's outcome is then the same in any
batch; only ``square-aa`` (one window per iteration for the whole batch) is not.

The victim is handed to pyautoattack as ``victim.module()`` inside ``victim.attack_mode()``:
an ``nn.Module`` that resets the SNN's state before every forward, applies the attacker's
gradient estimator, and (for stochastic victims) averages over EOT samples. For APGD the EOT
averaging is pyautoattack's own ``eot_iter`` (default: ``victim.eot``) over single forward
passes, as in AutoAttack's "rand" version. Notes on the official code that matter here:

- its attack classes never call ``model.eval()`` (``attack_mode`` does) and put tensors on
  ``x.device`` (we pass the device explicitly); ``verbose`` is always off here;
- it reseeds the *global* torch RNG with its ``seed``; we run it inside ``torch.random.fork_rng``
  so the caller's RNG state is unchanged;
- its own warnings (e.g. "points with zero gradient") are captured into ``meta["warnings"]``;
- it perturbs images in [0, 1] only, so these attacks refuse ``perturb="spikes"``;
- it does not expose per-step losses, so ``loss_trace`` is None.

Which samples are attacked is decided here, by the victim's vote, not by the official code.
Its ``perturb`` methods attack only the samples that one forward pass of the model they are
given classifies correctly, and stop attacking a sample once one pass misclassifies it; on a
stochastic model both checks are noisy, so samples that the final vote calls correct were
never attacked (26 of 256 in a Poisson-coded test) or left after a lucky pass. So we run the
official inner loop (``attack_single_run``: the APGD iterations, FAB's boundary steps,
Square's random search) ourselves, with AutoAttack's outer loop over restarts and target
classes (same seed, same order, same filtering), but with every "is it misclassified yet"
decision made by ``victim.predict``:

- a deterministic victim's verdict at z0 is exact, so its clean mistakes are skipped as in
  the official code; on a stochastic victim every sample handed over is attacked;
- after each restart / target class the official loop's candidates (APGD: its last
  misclassified iterate and its highest-loss iterate; FAB and Square: their output) are
  scored by one vote (:func:`vote_score`) and the better one is offered to
  :class:`BestPoints`; a sample leaves the loop once a vote calls a candidate misclassified;
- FAB's own checks (the clean-point filter, "is this iterate adversarial", the target
  ranking) use the vote and the voted logits (for a deterministic victim the same as the
  plain forward pass);
- the kept points are scored by a fresh vote; a sample it calls correct that skipped any
  restart or target class (the loop left it after an earlier vote said "misclassified") is
  resumed: the whole loop runs again on it (seed + 1) and only it is re-scored.

``meta`` records how many samples each run attacked, skipped, and resumed
(``attacked``, ``skipped_clean_mistakes``, ``resumed``, ``unattacked_robust``: the samples
counted robust that no restart attacked, 0 by construction). Every returned point is
re-projected with ``victim.project`` and scored with ``victim.predict``.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Optional

import torch

from ..errors import ConfigError
from ..keyed_random import SampleDraws
from .base import (
    Attack, AttackResult, BestPoints, begin_run, check_float, check_int, keyed_passes, misclassified,
    note_unkeyed, on_device, per_sample, rows_of, sample_keys, sample_norm, vote_score,
)
from .finished_rows import AllBroken, FinishedRows
from .square import SquareConfig  # square-aa takes our Square's options, with the same meaning

_NORMS = {"linf": "Linf", "l2": "L2"}


def _check_eot(attack: str, value: Any) -> None:
    if value is not None:
        check_int(attack, "eot_iter", value, 1)


@dataclass
class APGDCEConfig:
    n_iter: int = 100
    n_restarts: int = 1
    rho: float = 0.75                 # step-size decrease checkpoint threshold
    eot_iter: Optional[int] = None    # None -> victim.eot
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "n_iter", self.n_iter, 1)
        check_int(attack, "n_restarts", self.n_restarts, 1)
        check_float(attack, "rho", self.rho, low=0.0, high=1.0)
        _check_eot(attack, self.eot_iter)
        check_int(attack, "seed", self.seed, 0)


@dataclass
class APGDTConfig(APGDCEConfig):
    n_target_classes: int = 9         # capped at (classes - 1)

    def validate(self, attack: str) -> None:
        super().validate(attack)
        check_int(attack, "n_target_classes", self.n_target_classes, 1)


@dataclass
class FABTConfig:
    n_iter: int = 100
    n_restarts: int = 1
    n_target_classes: int = 9         # capped at (classes - 1)
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    seed: int = 0

    def validate(self, attack: str) -> None:
        check_int(attack, "n_iter", self.n_iter, 1)
        check_int(attack, "n_restarts", self.n_restarts, 1)
        check_int(attack, "n_target_classes", self.n_target_classes, 1)
        check_float(attack, "alpha_max", self.alpha_max, low=0.0, high=1.0)
        check_float(attack, "eta", self.eta, low=0.0)
        check_float(attack, "beta", self.beta, low=0.0, high=1.0)
        check_int(attack, "seed", self.seed, 0)


def victim_module(victim, eot: int):
    """``victim.module()`` averaging ``eot`` forward passes per call.

    The Victim's module averages ``victim.eot`` passes. Where a different count is needed
    (APGD does its own EOT loop over single passes), it is the module of a twin Victim that
    differs only in ``eot`` (same model, threat model, estimator object, vote and device).

    Returns (module, owner): the module and the Victim whose ``attack_mode`` it runs in."""
    if eot == victim.eot:
        return victim.module(), victim
    from ..evaluation.victim import Victim

    twin = Victim(victim.model, victim.threat, estimator=victim.estimator, eot=eot, vote=victim.vote,
                  device=getattr(victim, "device", None))
    return twin.module(), twin


class AutoAttackBase(Attack):
    """Shared driver: build the pyautoattack object on the victim's module, run AutoAttack's
    outer loop with the victim's vote deciding which samples are still to attack (module
    docstring), and score the kept points with a fresh vote."""

    kind = "gradient"
    steps_option = "n_iter"
    restarts_option = "n_restarts"

    def n_classes(self, victim, z0: torch.Tensor) -> int:
        return int(victim.logits(z0[:1]).shape[-1])

    def build(self, module, victim, eps: float, norm: str, device, n_classes: int,
              shape: tuple) -> tuple[Any, dict]:
        """The pyautoattack object and the settings it resolved; ``shape`` = z0.shape[1:]."""
        raise NotImplementedError

    def module_eot(self, victim) -> int:
        """EOT passes averaged inside the module: all of them for attacks without their own
        EOT loop (FAB, Square); APGD averages with its eot_iter over single passes."""
        return int(getattr(victim, "eot", 1) or 1)

    def stages(self, used: dict) -> list[Optional[int]]:
        """AutoAttack's outer loop, in its order: one entry per run of the inner loop, the
        target-class rank (2 = the runner-up) or None for untargeted attacks."""
        return [None] * self.config.n_restarts

    def single_run(self, atk, victim, x: torch.Tensor, y: torch.Tensor, target: Optional[int],
                   restart: int, draws: SampleDraws) -> Any:
        """One run of the official inner loop on x [n, C, H, W] (float) with labels y [n] and
        the rows' own random draws ``draws``; returns its candidate points (a list, each
        [n, C, H, W]), or (that list, bool [n]) when only some rows are candidates."""
        raise NotImplementedError

    def prepare(self, atk, x: torch.Tensor) -> None:
        """What the official ``perturb`` sets up on the attack object before its loop."""
        atk.init_hyperparam(x)

    @contextmanager
    def _official(self, victim, owner, device: torch.device, caught: list) -> Iterator[None]:
        """Attack mode on both victims, warnings recorded into ``caught``, and a forked RNG
        (the official code reseeds the global one)."""
        devices = [device] if device.type == "cuda" else []
        with victim.attack_mode(), owner.attack_mode(), warnings.catch_warnings(record=True) as rec, \
                torch.random.fork_rng(devices=devices):
            warnings.simplefilter("always")
            try:
                yield
            finally:
                caught.extend(rec)

    def _search(self, atk, victim, z0: torch.Tensor, y: torch.Tensor, todo: torch.Tensor,
                best: BestPoints, ran: torch.Tensor, stages: list, seed: int, keys: torch.Tensor) -> None:
        """AutoAttack's outer loop over ``stages`` on the samples ``todo`` (bool [B]) that no
        candidate has fooled the vote on yet; counts the inner runs per sample in ``ran``. Each
        inner run's random start is drawn per sample (``keys``: global sample indices) and its
        rows are declared to the victim, so its random passes are keyed per sample too."""
        x = z0.float()
        self.prepare(atk, x)
        torch.random.manual_seed(seed)
        torch.cuda.random.manual_seed(seed)
        restart = 0
        for i, target in enumerate(stages):
            restart = 0 if i == 0 or target != stages[i - 1] else restart + 1
            idx = (todo & ~best.success).nonzero().squeeze(1)
            if idx.numel() == 0:
                return
            xs, ys = x.index_select(0, idx), y[idx]
            draws = SampleDraws(seed, keys[idx.cpu()], stream=(target, restart))
            try:
                with rows_of(victim, keys[idx.cpu()]):
                    candidates = self.single_run(atk, victim, xs, ys, target, restart, draws)
            except RuntimeError as e:
                # pyautoattack's L2 Square mis-shapes its windows at some image sizes (seen at 12x12)
                if self.name == "square-aa" and victim.threat.norm == "l2" and "shape" in str(e):
                    raise ConfigError(f"attack square-aa under L2 fails on {tuple(z0.shape[-2:])} images in the "
                                      f"official code ({str(e).splitlines()[0][:80]}); "
                                      "use square (snnrobust's) or linf") from None
                raise
            ran[idx] += 1
            if isinstance(candidates, tuple):        # (candidates, bool [n]: rows that are candidates)
                candidates, valid = candidates
                keep = valid.nonzero().squeeze(1)
                idx, ys = idx[keep], ys[keep]
                candidates = [c.index_select(0, keep) for c in candidates]
            if idx.numel():
                with rows_of(victim, keys[idx.cpu()]):
                    _offer(victim, best, idx, ys, [c.detach().to(z0.dtype) for c in candidates])

    def run(self, victim, z0: torch.Tensor, y: torch.Tensor, keys: Optional[torch.Tensor] = None) -> AttackResult:
        """AutoAttack's loop with the victim's vote (module docstring). ``keys`` [B]: the
        samples' global indices; random starts and the victim's random passes are keyed by
        them, so a sample's outcome does not depend on its batch-mates."""
        begin_run(victim)
        keys = sample_keys(keys, y.shape[0])
        threat = victim.threat
        if threat.perturb == "spikes":
            raise ConfigError(f"attack {self.name}: AutoAttack attacks perturb pixels only; "
                              "use pgd, sapgd or mifgsm for perturb=spikes")
        if threat.norm not in _NORMS:
            raise ConfigError(f"attack {self.name}: norm {threat.norm!r} is not supported; use linf or l2")
        z0, y = on_device(victim, z0, y)
        k = self.n_classes(victim, z0)  # one unkeyed pass: only the logits' shape is used
        with keyed_passes(victim, self.name, int(self.config.seed), keys) as draws:
            result = self._run(victim, z0, y.long(), keys, k)
            note_unkeyed(result.meta, draws)
            return result

    def _run(self, victim, z0: torch.Tensor, y: torch.Tensor, keys: torch.Tensor, k: int) -> AttackResult:
        threat = victim.threat
        B = y.shape[0]
        fooled0 = misclassified(victim, z0, y)
        best = BestPoints(z0, fooled0, 0, None)
        module, owner = victim_module(victim, self.module_eot(victim))
        noisy = bool(getattr(victim, "stochastic", False))
        # a deterministic verdict at z0 is exact: skip clean mistakes as the official code does;
        # a stochastic one is a single noisy vote: attack every sample handed over
        todo = torch.ones_like(fooled0) if noisy else ~fooled0
        ran = torch.zeros(B, dtype=torch.long, device=fooled0.device)
        seed = int(self.config.seed)
        caught: list = []
        with self._official(victim, owner, z0.device, caught):
            atk, used = self.build(module, victim, float(threat.eps), _NORMS[threat.norm], z0.device, k,
                                   tuple(z0.shape[1:]))
            stages = self.stages(used)
            self._search(atk, victim, z0, y, todo, best, ran, stages, seed, keys)
        z_adv = victim.project(best.z, best.z0).detach()
        success = misclassified(victim, z_adv, y)
        # counted robust by this vote, but the loop left it early (or never took it) on the
        # strength of an earlier vote: run the whole loop again on it
        resume = ~success & (ran < len(stages))
        n_resumed = int(resume.sum().item())
        if n_resumed:
            ridx = resume.nonzero().squeeze(1)
            best.revoke(ridx)
            with self._official(victim, owner, z0.device, caught):
                self._search(atk, victim, z0, y, resume, best, ran, stages, seed + 1, keys)
            z_adv = victim.project(best.z, best.z0).detach()
            with rows_of(victim, keys[ridx.cpu()]):
                success[ridx] = misclassified(victim, z_adv.index_select(0, ridx), y[ridx])
        meta = self.base_meta(victim)
        meta.update(used)
        meta.update(implementation="pyautoattack " + _version(), n_classes=k,
                    loss_trace_note="not exposed by pyautoattack",
                    warnings=sorted({str(w.message) for w in caught}),
                    selection=("samples chosen by the victim's vote (official inner loop, our outer loop); "
                               + ("every sample attacked (stochastic victim)" if noisy
                                  else "clean mistakes skipped (deterministic victim)")),
                    stages=len(stages),
                    attacked=int((ran > 0).sum().item()),
                    skipped_clean_mistakes=int((~todo).sum().item()),
                    resumed=n_resumed,
                    unattacked_robust=int((~success & (ran == 0)).sum().item()))
        counts = getattr(atk, "finished_rows", None)
        if counts is not None:
            meta["finished_rows"] = {"rows_computed": counts[1], "rows_full_loop": counts[2],
                                     "note": "rows a pass misclassified were not computed further "
                                             "(deterministic victim; same outcome)"}
        return AttackResult(z_adv=z_adv, success=success.cpu(), loss_trace=None, meta=meta)


def _offer(victim, best: BestPoints, idx: torch.Tensor, y: torch.Tensor, candidates: list) -> None:
    """Score each candidate set [n, ...] with one vote (after ``victim.project``), keep per
    sample the one a vote calls misclassified, else the higher vote score, and offer it to
    ``best`` with its score as the loss (so a non-fooling point is ranked by how close a vote
    came to calling it misclassified)."""
    z0 = best.z0.index_select(0, idx)
    pick_z: Optional[torch.Tensor] = None
    for c in candidates:
        z = victim.project(c, z0)
        f, sc = vote_score(victim, z, y)
        if pick_z is None:
            pick_z, pick_f, pick_s = z, f, sc
            continue
        better = (f & ~pick_f) | ((f == pick_f) & (sc > pick_s))
        pick_z = torch.where(better.view(-1, *[1] * (z.dim() - 1)), z, pick_z)
        pick_f, pick_s = pick_f | f, torch.where(better, sc, pick_s)
    if pick_z is not None:
        best.update(idx, pick_z, pick_f, pick_s)


def apgd_start(x: torch.Tensor, draws: SampleDraws, norm: str, eps: float) -> torch.Tensor:
    """APGD's random start, drawn per sample: x + eps * t / ||t|| with t uniform in [-1, 1]
    (L-inf, normalized by its largest entry) or standard normal (L2, by its L2 norm). The
    official code draws t for the whole batch; handing it this point as ``x_init`` makes the
    start depend on the sample alone. x [n, C, H, W]; APGD clamps the point into [0, 1]."""
    if norm == "Linf":
        t = 2 * draws.draw(x.shape, "uniform") - 1
    else:
        t = draws.draw(x.shape, "normal")
    t = t / per_sample(sample_norm(t, "linf" if norm == "Linf" else "l2"), t).clamp_min(1e-12)
    return x + eps * t.to(device=x.device, dtype=x.dtype)


def apgd_single_run(atk, victim, x: torch.Tensor, y: torch.Tensor, draws: SampleDraws) -> list:
    """One official APGD inner run from the rows' own random start; its candidates: the last
    iterate one pass misclassified and the highest-loss iterate. On a deterministic victim the
    rows a pass has misclassified stop being computed (:mod:`.finished_rows`: same outcome, a
    fraction of the passes); the run's counts go to ``atk.finished_rows`` [calls, rows computed,
    rows x calls of the full loop]."""
    x_init = apgd_start(x, draws, atk.norm, atk.eps)
    if getattr(victim, "stochastic", False) or int(atk.eot_iter) != 1:
        x_best, _, _, x_best_adv = atk.attack_single_run(x, y, x_init=x_init)
        return [x_best_adv, x_best]
    module, rows = atk.model, FinishedRows(atk.model, y)
    atk.model = rows
    try:
        x_best, _, _, x_best_adv = atk.attack_single_run(x, y, x_init=x_init)
        candidates = [x_best_adv, x_best]
    except AllBroken:
        assert rows.x_break is not None
        candidates = [rows.x_break]
    finally:
        atk.model = module
        counts = getattr(atk, "finished_rows", [0, 0, 0])
        atk.finished_rows = [counts[0] + rows.calls, counts[1] + rows.rows_computed,
                             counts[2] + (int(atk.n_iter) + 1) * int(y.shape[0])]
    return candidates


class _KeyedTorch:
    """``torch`` as FAB's module sees it inside :func:`_fab_draws`: ``rand`` and ``randn`` of
    a batch-first shape come from the rows' own draws, everything else is torch."""

    def __init__(self, draws: SampleDraws) -> None:
        self._draws = draws

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def _draw(self, kind: str, fallback: Any, shape: tuple, kw: dict) -> torch.Tensor:
        size = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else tuple(shape)
        if size and size[0] == len(self._draws) and not kw:
            return self._draws.draw(size, kind)
        return fallback(*shape, **kw)

    def rand(self, *shape: Any, **kw: Any) -> torch.Tensor:
        return self._draw("uniform", torch.rand, shape, kw)

    def randn(self, *shape: Any, **kw: Any) -> torch.Tensor:
        return self._draw("normal", torch.randn, shape, kw)


@contextmanager
def _fab_draws(draws: SampleDraws) -> Iterator[None]:
    """FAB's random start (``torch.rand``/``torch.randn`` in pyautoattack's ``fab_base``, for
    the whole batch) drawn per sample for a ``with`` block."""
    import pyautoattack.fab_base as fab_base

    saved = fab_base.torch
    fab_base.torch = _KeyedTorch(draws)
    try:
        yield
    finally:
        fab_base.torch = saved


@lru_cache(maxsize=None)
def _voted_fab() -> type:
    """pyautoattack's FAB (PyTorch) with its checks made by the victim (``atk.victim``):

    - ``_get_predicted_label`` (is an iterate adversarial?) is ``victim.predict``, the vote
      that scores the result, so the minimum-norm point FAB keeps is one the vote called
      misclassified;
    - ``_predict_fn`` (the logits its target ranking sorts) is ``victim.logits``;
    - its inner loop's first check, "which of these are classified correctly at the clean
      point", is answered "all of them": the driver has already chosen them by the vote, and
      a fresh noisy check would drop some at random.

    For a deterministic victim all three give what the plain forward pass gives. Gradients
    still come from the module FAB was built on."""
    from pyautoattack.fab_pt import FABAttack_PT

    class VotedFAB(FABAttack_PT):
        victim: Any = None
        _chosen: Optional[torch.Tensor] = None

        def _predict_fn(self, x):
            return self.victim.logits(x)

        def _get_predicted_label(self, x):
            if self._chosen is not None:
                labels, self._chosen = self._chosen, None
                if labels.shape[0] != x.shape[0]:
                    raise RuntimeError("FAB's first check was not on the batch it was given "
                                       f"({x.shape[0]} vs {labels.shape[0]} samples): pyautoattack changed")
                return labels
            return self.victim.predict(x)

        def attack_single_run(self, x, y=None, use_rand_start=False, is_targeted=False):
            self._chosen = y.detach().long().to(x.device)
            try:
                return super().attack_single_run(x, y, use_rand_start=use_rand_start, is_targeted=is_targeted)
            finally:
                self._chosen = None

    return VotedFAB


def _version() -> str:
    import pyautoattack

    return getattr(pyautoattack, "__version__", "?")


class APGDCE(AutoAttackBase):
    name = "apgd-ce"
    description = "APGD-CE (AutoAttack, official pyautoattack code): step-size-free PGD on cross-entropy"
    Config = APGDCEConfig
    iterative = True

    def module_eot(self, victim) -> int:
        return 1

    loss = "ce"

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        from pyautoattack.autopgd_base import APGDAttack

        if self.loss == "dlr" and n_classes < 3:
            raise ConfigError(f"attack {self.name} needs >= 3 classes (DLR loss), the model has {n_classes}; "
                              "use apgd-ce instead")
        c = self.config
        eot = c.eot_iter if c.eot_iter is not None else int(getattr(victim, "eot", 1) or 1)
        atk = APGDAttack(module, n_iter=c.n_iter, norm=norm, n_restarts=c.n_restarts, eps=eps, seed=c.seed,
                         loss=self.loss, eot_iter=eot, rho=c.rho, verbose=False, device=device)
        return atk, {"eot_iter": eot, "loss": self.loss}

    def single_run(self, atk, victim, x, y, target, restart, draws):
        return apgd_single_run(atk, victim, x, y, draws)


class APGDDLR(APGDCE):
    name = "apgd-dlr"
    description = "APGD-DLR (AutoAttack, official code): APGD on the untargeted DLR loss (its rand version)"
    loss = "dlr"


class APGDT(AutoAttackBase):
    name = "apgd-t"
    description = "APGD-T (AutoAttack, official code): targeted DLR loss over the top n_target_classes"
    Config = APGDTConfig
    iterative = True

    def module_eot(self, victim) -> int:
        return 1

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        from pyautoattack.autopgd_base import APGDAttack_targeted

        if n_classes < 4:
            raise ConfigError(f"attack {self.name} needs >= 4 classes (targeted DLR loss), the model has "
                              f"{n_classes}; use apgd-ce instead")
        c = self.config
        eot = c.eot_iter if c.eot_iter is not None else int(getattr(victim, "eot", 1) or 1)
        targets = min(c.n_target_classes, n_classes - 1)
        atk = APGDAttack_targeted(module, n_iter=c.n_iter, norm=norm, n_restarts=c.n_restarts, eps=eps,
                                  seed=c.seed, eot_iter=eot, rho=c.rho, n_target_classes=targets,
                                  verbose=False, device=device)
        return atk, {"eot_iter": eot, "n_target_classes": targets, "loss": "dlr-targeted"}

    def stages(self, used):
        return [t for t in range(2, used["n_target_classes"] + 2) for _ in range(self.config.n_restarts)]

    def single_run(self, atk, victim, x, y, target, restart, draws):
        # the official code ranks the targets by one forward pass; the voted logits (the same
        # for a deterministic victim) do not let one noisy pass pick them
        atk.y_target = victim.logits(x).sort(dim=1)[1][:, -target]
        return apgd_single_run(atk, victim, x, y, draws)


class FABT(AutoAttackBase):
    name = "fab-t"
    description = "FAB-T (AutoAttack, official code): targeted minimum-norm boundary attack"
    Config = FABTConfig
    iterative = True

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        if n_classes < 2:
            raise ConfigError(f"attack {self.name} needs >= 2 classes")
        c = self.config
        targets = min(c.n_target_classes, n_classes - 1)
        atk = _voted_fab()(module, norm=norm, n_restarts=c.n_restarts, n_iter=c.n_iter, eps=eps,
                           alpha_max=c.alpha_max, eta=c.eta, beta=c.beta, verbose=False, seed=c.seed,
                           targeted=True, device=device, n_target_classes=targets)
        atk.victim = victim
        return atk, {"n_target_classes": targets, "module_eot": self.module_eot(victim),
                     "checks": "victim vote (clean filter, adversarial iterates), voted logits (targets)"}

    def stages(self, used):
        return [t for t in range(2, used["n_target_classes"] + 2) for _ in range(self.config.n_restarts)]

    def prepare(self, atk, x):
        pass  # FAB's inner loop sets itself up

    def single_run(self, atk, victim, x, y, target, restart, draws):
        atk.target_class = target
        # as the official perturb (FAB enables grad where it needs it); its random start
        # (restarts after the first) drawn per sample
        with torch.no_grad(), _fab_draws(draws):
            adv = atk.attack_single_run(x, y, use_rand_start=restart > 0, is_targeted=True)
        # FAB hands back the clean point where it found nothing: that is no candidate
        return [adv], (adv != x).flatten(1).any(1)


class SquareAA(AutoAttackBase):
    """AutoAttack's own Square code, for cross-checking snnrobust's ``square`` (which draws its
    windows per sample). The official code draws one window position per iteration for the
    whole batch, so its outcomes depend on the batch (not keyed)."""

    name = "square-aa"
    description = ("Square attack (AutoAttack, official code): score-based random search; one window per "
                   "iteration for the whole batch (batch-dependent), for cross-checks")
    Config = SquareConfig
    kind = "score"
    steps_option = "n_queries"

    def build(self, module, victim, eps, norm, device, n_classes, shape):
        from pyautoattack.square import SquareAttack

        c = self.config
        if len(shape) != 3:
            raise ConfigError(f"attack {self.name} needs images [B, C, H, W], got inputs of shape [B, {shape}]")
        if norm == "L2" and min(shape[1:]) < 5:
            raise ConfigError(f"attack {self.name} under L2 needs images of at least 5x5 pixels, "
                              f"got {shape[1]}x{shape[2]}")
        # Square only queries the model: no graph needed
        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x)

        atk = SquareAttack(predict, norm=norm, n_queries=c.n_queries, eps=eps, p_init=c.p_init,
                           n_restarts=c.n_restarts, seed=c.seed, verbose=False, targeted=False,
                           loss=c.loss, resc_schedule=c.resc_schedule, device=device)
        return atk, {"module_eot": self.module_eot(victim)}

    def single_run(self, atk, victim, x, y, target, restart, draws):
        _, adv = atk.attack_single_run(x, y)
        return [adv]
