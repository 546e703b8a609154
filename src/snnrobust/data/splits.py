"""Train/test splits and the record that proves which images a run used."""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

from .base import ImageDataset


def indices_sha256(indices: np.ndarray) -> str:
    """sha256 of the sorted indices as little-endian int64 (independent of their order)."""
    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).astype("<i8").tobytes()).hexdigest()


def _balanced_order(indices_per_class: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Interleave classes so that every prefix holds them in proportion to their counts.

    Sample r of a class with n members gets key (r + u) / n, u ~ U(0, 1); sorting by key
    gives e.g. one image per class, in random class order, then the next one of each, ...
    so ``ImageDataset.subset(n)`` of a balanced split is itself balanced.
    """
    keys, idx = [], []
    for members in indices_per_class:
        n = len(members)
        if n == 0:
            continue
        keys.append((np.arange(n) + rng.random(n)) / n)
        idx.append(members)
    if not idx:
        return np.zeros(0, dtype=np.int64)
    keys_all, idx_all = np.concatenate(keys), np.concatenate(idx)
    return idx_all[np.argsort(keys_all, kind="stable")].astype(np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of ``range(len(labels))`` into (train, test) index arrays.

    Each class c with n_c members gives round(n_c * test_fraction) test images, chosen at
    random with ``numpy.random.default_rng(seed)``. Both index arrays are returned in
    class-balanced order (see :func:`_balanced_order`). Same labels and seed -> same split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(members) * test_fraction))
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    return _balanced_order(train_parts, rng), _balanced_order(test_parts, rng)


def split_record(
    method: str,
    seed: Optional[int],
    train_indices: np.ndarray,
    test_indices: np.ndarray,
    train: ImageDataset,
    test: ImageDataset,
    index_base: str,
    **extra: object,
) -> dict:
    """The ``DatasetInfo.split`` dict: method, seed, index hashes and content hashes."""
    return {
        "method": method,
        "seed": seed,
        **extra,
        "index_base": index_base,
        "n_train": int(len(train_indices)),
        "n_test": int(len(test_indices)),
        "train_sha256": indices_sha256(train_indices),
        "test_sha256": indices_sha256(test_indices),
        "train_data_sha256": train.content_sha256(),
        "test_data_sha256": test.content_sha256(),
    }
