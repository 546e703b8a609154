"""torch.distributed for snnrobust: who this process is, and the few collectives the trainer and
the evaluation engine need.

A process belongs to a distributed run when it was launched by ``torchrun`` (the environment
holds ``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``):
:func:`init_from_env` then joins the process group (NCCL when the process has a GPU, gloo
otherwise; ``SNNROBUST_DIST_BACKEND`` overrides). Everything here also works in a plain
process, as a world of one.
"""

from __future__ import annotations

import os
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

from .errors import ConfigError

T = TypeVar("T")


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a plain process): the one that writes checkpoints, results and reports."""
    return rank() == 0


def launched() -> bool:
    """Whether the environment says this process was launched as one of several (torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not a number; launch with torchrun") \
            from None


def init_from_env() -> bool:
    """Join the process group torchrun described in the environment (once); False in a plain
    process. Each process with a GPU uses the one of its ``LOCAL_RANK``."""
    if not launched():
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    if dist.is_initialized():
        return True
    backend = os.environ.get("SNNROBUST_DIST_BACKEND")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = backend or "nccl"
    dist.init_process_group(backend or "gloo")
    return True


def device() -> str:
    """The device this process computes on: its own GPU under torchrun, else cuda / cpu."""
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}" if active() else "cuda"
    return "cpu"


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every world_size-th item from position ``rank`` (all of
    them in a plain process). No item goes to two ranks and none is padded in."""
    return list(items[rank()::world_size()])


def gather(obj: Any) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` in a plain process)."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank."""
    return any(gather(bool(flag)))
