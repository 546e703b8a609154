"""One attack spec run over samples in fixed batches: each batch attacked on its own (seeded by
its own position, its random draws keyed per sample), journalled when a journal is given, and
shared out across the processes of a distributed run.

Why fixed batches: the batches are cut from the ordered sample list by the batch size alone, so
every process count cuts the same batches; each batch seeds the global RNG and the stochastic
encoders from (evaluation seed, attack id, eps, its first sample) and hands the attack each
sample's global index as its key. A batch's outcome is therefore the same whichever process
attacks it, in whatever order: a sharded evaluation gives exactly the one-process outcomes, and a
resumed one reuses finished batches at any number of processes. Every attack's random choices are
also keyed per sample (:class:`~snnrobust.keyed_random.SampleDraws` for starts and windows,
:class:`~snnrobust.keyed_random.PassDraws` for a Poisson encoder's passes), so outcomes do not
depend on the batch size either (except ``square-aa`` and PGD's ``abort_grad_norm``); the batch
seed only reaches draws nothing keys.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .. import distributed
from ..errors import SnnRobustError
from ..spiking.functional import seeded_encoders


def seed_for(seed: int, *parts: Any) -> int:
    """A seed derived from the run's seed and a label (stable across processes, unlike hash())."""
    return (int(seed) * 1_000_003 + zlib.crc32("|".join(map(str, parts)).encode())) % (2**31 - 1)


@dataclass
class BatchOutcome:
    """What attacking one batch left. ``samples``: global sample indices; per sample: ``success``
    (fooled at a valid point), ``failed`` (never attacked: its part of the batch crashed),
    ``loss_start`` / ``loss_end`` (attack loss at the first and last iterate, None without a
    trace); ``trace_sum`` the loss per iterate summed over attacked samples."""

    samples: list
    success: list
    failed: list
    errors: list = field(default_factory=list)
    loss_start: Optional[list] = None
    loss_end: Optional[list] = None
    trace_sum: Optional[list] = None
    trace_count: int = 0
    meta: dict = field(default_factory=dict)
    invalid: int = 0
    oom_sizes: list = field(default_factory=list)
    nonfinite: int = 0
    gradient_images: int = 0
    forward_images: int = 0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        # NaN losses (samples not attacked) as None: the journal stores strict JSON
        for k in ("loss_start", "loss_end"):
            if d[k] is not None:
                d[k] = [None if isinstance(v, float) and math.isnan(v) else v for v in d[k]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BatchOutcome":
        d = dict(d)
        for k in ("loss_start", "loss_end"):
            if d.get(k) is not None:
                d[k] = [math.nan if v is None else float(v) for v in d[k]]
        return cls(**d)


#: attack_one(zb_indices [b]) -> (success bool [b], loss trace [n_trace, b] or None, meta, invalid)
AttackOne = Callable[[torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor], dict, int]]


def attack_batch(samples: torch.Tensor, attack_one: AttackOne, is_oom: Callable[[BaseException], bool],
                 free_memory: Callable[[], None], first_line: Callable[[BaseException], str]) -> BatchOutcome:
    """Attack the global samples ``samples`` [b] with ``attack_one``. A part that runs out of
    memory is retried as two halves, recursively down to one sample; a part that still fails
    (an error at one sample, or a RuntimeError/ValueError/IndexError/MemoryError in the attack)
    is marked failed with its error and the rest still runs. A :class:`SnnRobustError` (a user
    error) propagates at once."""
    n = samples.numel()
    success = torch.zeros(n, dtype=torch.bool)
    failed = torch.zeros(n, dtype=torch.bool)
    start = torch.full((n,), math.nan)
    end = torch.full((n,), math.nan)
    out = BatchOutcome(samples=samples.tolist(), success=[], failed=[])
    trace_sum: Optional[torch.Tensor] = None
    have_trace = False
    todo = [(0, n)]
    while todo:
        lo, hi = todo.pop(0)
        error, oom = None, False
        try:
            ok, trace, meta, invalid = attack_one(samples[lo:hi])
        except SnnRobustError:
            raise
        except (RuntimeError, ValueError, IndexError, MemoryError) as e:
            # keep only the text: the traceback holds the failed batch's tensors alive
            error, oom = first_line(e), is_oom(e)
        if error is not None:
            if oom:
                free_memory()
            if oom and hi - lo > 1:
                out.oom_sizes.append(hi - lo)
                mid = lo + (hi - lo) // 2
                todo[:0] = [(lo, mid), (mid, hi)]
                continue
            failed[lo:hi] = True
            if error not in out.errors:
                out.errors.append(error)
            continue
        out.invalid += invalid
        success[lo:hi] = ok
        if trace is not None:
            have_trace = True
            start[lo:hi] = trace[0]
            end[lo:hi] = trace[-1]
            s = torch.nan_to_num(trace, nan=0.0).sum(1)
            if trace_sum is None:
                trace_sum = s
            elif trace_sum.shape == s.shape:
                trace_sum += s
            out.trace_count += hi - lo
        if not out.meta:
            out.meta = meta
    out.success, out.failed = success.tolist(), failed.tolist()
    if have_trace:
        out.loss_start, out.loss_end = start.tolist(), end.tolist()
    out.trace_sum = trace_sum.tolist() if trace_sum is not None else None
    return out


def run_batches(idx: torch.Tensor, batch_size: int, compute: Callable[[torch.Tensor], BatchOutcome],
                batch_seed: Callable[[torch.Tensor], int], model: torch.nn.Module, journal: Any = None,
                journal_key: Optional[tuple] = None, on_done: Optional[Callable[[int], None]] = None
                ) -> list[BatchOutcome]:
    """Every batch of ``idx`` (global sample indices, cut into batches of ``batch_size`` in
    order): this process's share attacked (each under its own seed, ``batch_seed(samples)``) or
    read back from ``journal``; then every process's outcomes, in batch order.

    ``journal_key``: (attack id, eps) under which batches are journalled."""
    batches = [idx[lo:lo + batch_size] for lo in range(0, idx.numel(), batch_size)]
    mine: list[tuple[int, dict]] = []
    error: Optional[str] = None
    for pos in distributed.shard(range(len(batches))):
        samples = batches[pos]
        stored = journal.get(*journal_key, samples.tolist()) if journal is not None else None
        if stored is not None:
            mine.append((pos, stored))
        else:
            seed = batch_seed(samples)
            torch.manual_seed(seed)
            try:
                with seeded_encoders(model, seed):
                    outcome = compute(samples)
            except SnnRobustError as e:
                if not distributed.active():
                    raise
                error = str(e)  # the other processes must hear of it, not wait for this one
                break
            d = outcome.to_dict()
            if journal is not None and not any(outcome.failed):  # a crashed batch is retried on re-run
                journal.put(*journal_key, samples.tolist(), d)
            mine.append((pos, d))
        if on_done is not None:
            on_done(samples.numel())
    gathered = distributed.gather((mine, error))
    errors = [e for _, e in gathered if e]
    if errors:
        raise SnnRobustError(errors[0])
    done = sorted((p, d) for part, _ in gathered for p, d in part)
    return [BatchOutcome.from_dict(d) for _, d in done]
