"""Compute-once helper: the studies' resume mechanism.

``cached`` returns the stored result for a key, or computes it and stores it the moment it
completes. A study that is killed loses at most the item in progress; re-running it finds
every finished item in the store and recomputes none of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .results_store import ResultsStore


def cached(
    store: ResultsStore,
    kind: str,
    checkpoint_hash: str,
    config: Any,
    compute: Callable[[], dict],
    label: str = "",
    study: str = "",
) -> tuple[dict, bool]:
    """``(payload, was_cached)``: the stored payload for the key, else ``compute()``'s, stored now.

    The returned payload is always the one read back from the store (JSON-normalized: tuples
    are lists), so a first run and a resumed run see identical values. If another process
    stored the same key while we computed, its (first) result is kept and returned.
    ``duration_s`` records compute()'s wall time in seconds.
    """
    payload = store.get(kind, checkpoint_hash, config)
    if payload is not None:
        return payload, True
    t0 = time.perf_counter()
    result = compute()
    duration = time.perf_counter() - t0
    if not isinstance(result, dict):
        raise TypeError(f"compute() for {kind} {label or ''} returned {type(result).__name__}, expected a dict")
    store.put(kind, checkpoint_hash, config, result, label=label, study=study, duration_s=duration)
    stored = store.get(kind, checkpoint_hash, config)
    return (stored if stored is not None else result), False
