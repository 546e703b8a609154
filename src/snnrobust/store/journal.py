"""The batch journal: every attacked batch of an evaluation, stored the moment it finishes, so
that an interrupted evaluation (one process or many) resumes at the batch level, at any number
of processes, without attacking a sample twice.

The journal holds an evaluation in progress: once its result is stored, its batches are cleared.
A batch is keyed by the evaluation's key (a hash of the model, the data and every setting that
decides the outcome, batch size included: batches are cut from it), the attack's id, the eps and
the global indices of its samples. Rows live in a :class:`ResultsStore` (kind
``"attack-batch"``), which several processes may write at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from .results_store import ResultsStore

KIND = "attack-batch"


class BatchJournal:
    """Per-batch outcomes of one evaluation in the store at ``path`` (a file or a study folder).

    ``key``: the evaluation key (:func:`~snnrobust.store.hashing.config_hash` of what decides
    the outcome). Each process opens its own connection."""

    def __init__(self, path: "str | os.PathLike", key: str) -> None:
        self.path, self.key = path, str(key)
        self._store: Optional[ResultsStore] = None
        self._pid = -1
        self.reused = 0     # batches this process found done
        self.written = 0    # batches this process attacked and stored

    @property
    def store(self) -> ResultsStore:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = ResultsStore(self.path), os.getpid()
        return self._store

    @staticmethod
    def _config(attack_id: str, eps: float, samples: list[int]) -> dict:
        return {"attack": attack_id, "eps": round(float(eps), 12), "samples": [int(i) for i in samples]}

    def get(self, attack_id: str, eps: float, samples: list[int]) -> Optional[dict]:
        got = self.store.get(KIND, self.key, self._config(attack_id, eps, samples))
        if got is not None:
            self.reused += 1
        return got

    def put(self, attack_id: str, eps: float, samples: list[int], outcome: dict) -> None:
        if self.store.put(KIND, self.key, self._config(attack_id, eps, samples), outcome, label=attack_id):
            self.written += 1

    def rows(self) -> int:
        """Batches stored for this evaluation (every process's)."""
        return sum(1 for r in self.store.records(KIND) if r.checkpoint_hash == self.key)

    def clear(self) -> int:
        """Forget this evaluation's batches (once its result is stored); returns how many."""
        return self.store.delete_all(KIND, self.key)

    def discard(self) -> None:
        """Delete the journal's file (with SQLite's -wal and -shm files): for a journal in a file of
        its own, once the evaluation's result is written."""
        self.close()
        base = Path(self.path)
        for p in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")):
            p.unlink(missing_ok=True)

    def close(self) -> None:
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "key": self.key, "reused": self.reused, "written": self.written}
