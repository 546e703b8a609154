"""The results store: one SQLite file per study folder (``results.sqlite``).

Every finished unit of work — a training run, an evaluation, a sparsity or vulnerability
measurement — is one row keyed by ``(kind, checkpoint_hash, config_hash)``. A study asks the
store before computing and writes the result the moment it completes, so a study killed
midway resumes where it stopped and never computes a finished result twice.

Concurrency: the file is in WAL mode (readers never block the one writer); every write is a
short ``BEGIN IMMEDIATE`` transaction (it takes the write lock up front, so two writers queue
instead of deadlocking on a lock upgrade); the connection waits up to ``busy_timeout_s`` for
the lock and a write that still finds it locked is retried with back-off. Two processes
writing the same file at once therefore neither corrupt it nor lose rows.

Safety: a file that is not an snnrobust store (another program's SQLite database, a text
file, a corrupt or truncated database) is refused with a one-line
:class:`~snnrobust.errors.SnnRobustError` *before* anything is written to it.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import SnnRobustError
from .hashing import canonical_json, config_hash, to_json_value

RESULTS_FILENAME = "results.sqlite"
SCHEMA_VERSION = 1
APPLICATION = "snnrobust.results"
# SQLite's header field for "which program owns this file" (bytes 68-71); ASCII "SNNR".
APPLICATION_ID = 0x534E4E52
_SQLITE_MAGIC = b"SQLite format 3\x00"
_META_TABLE = "snnrobust_meta"
_DB_SUFFIXES = {".sqlite", ".sqlite3", ".db"}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_META_TABLE} (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    checkpoint_hash TEXT NOT NULL,
    config_hash     TEXT NOT NULL,
    label           TEXT NOT NULL DEFAULT '',
    study           TEXT NOT NULL DEFAULT '',
    created         TEXT NOT NULL,
    config_json     TEXT NOT NULL,
    payload_json    TEXT NOT NULL,
    duration_s      REAL,
    UNIQUE (kind, checkpoint_hash, config_hash)
);
CREATE INDEX IF NOT EXISTS results_by_study ON results (study, kind);
"""

_COLUMNS = (
    "id, kind, checkpoint_hash, config_hash, label, study, created, config_json, payload_json, duration_s"
)


@dataclass(frozen=True)
class Record:
    """One stored result. ``created`` is an ISO-8601 UTC timestamp; ``duration_s`` in seconds."""

    id: int
    kind: str
    checkpoint_hash: str
    config_hash: str
    label: str
    study: str
    created: str
    config: dict = field(repr=False)
    payload: dict = field(repr=False)
    duration_s: float | None = None

    @property
    def key(self) -> str:
        """Short human form of the key: ``<checkpoint[:8]>/<config[:8]>``."""
        return f"{self.checkpoint_hash[:8] or '-'}/{self.config_hash[:8]}"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "checkpoint_hash": self.checkpoint_hash,
            "config_hash": self.config_hash,
            "label": self.label,
            "study": self.study,
            "created": self.created,
            "duration_s": self.duration_s,
            "config": self.config,
            "payload": self.payload,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_lock_error(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


class ResultsStore:
    """Results of a study folder, on standard-library sqlite3.

    ``path`` is the database file or a study folder (then ``<folder>/results.sqlite``); a path
    that does not exist yet names a folder unless it ends in .sqlite, .sqlite3 or .db. A missing
    store is created (with its folders) unless ``readonly``; ``readonly`` opens without ever
    writing (for listing). Use as a context manager or call :meth:`close`.

    Keys: ``kind`` (e.g. "train", "evaluation", "sparsity", "vulnerability"),
    ``checkpoint_hash`` (:func:`~snnrobust.store.hashing.file_sha256` of the checkpoint; ""
    when the result depends on no checkpoint, e.g. training itself) and the full ``config``
    (any JSON-ready dict; stored canonically and keyed by its
    :func:`~snnrobust.store.hashing.config_hash`).
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False, busy_timeout_s: float = 30.0):
        p = Path(path)
        if p.is_dir() or (not p.exists() and p.suffix.lower() not in _DB_SUFFIXES):
            p = p / RESULTS_FILENAME
        self.path = p
        self.readonly = readonly
        self.busy_timeout_s = float(busy_timeout_s)
        self._lock = threading.RLock()
        self._conn_obj: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        self._open()

    # ------------------------------------------------------------------ opening
    def _refuse(self, what: str, todo: str) -> SnnRobustError:
        return SnnRobustError(f"{self.path}: {what}; {todo} (the file was left unchanged)")

    def _sniff(self) -> bool:
        """Check the file's first bytes before SQLite touches it. Returns True if it is new/empty."""
        p = self.path
        if not p.exists():
            if self.readonly:
                raise SnnRobustError(
                    f"{p}: no results store here; run a study or attack that writes results into this folder first"
                )
            return True
        if not p.is_file():
            raise SnnRobustError(f"{p}: not a regular file; remove it or choose another study folder")
        size = p.stat().st_size
        if size == 0:
            return True
        try:
            with open(p, "rb") as f:
                head = f.read(100)
        except OSError as e:
            raise SnnRobustError(f"{p}: cannot read it ({e.strerror or e}); check its permissions") from None
        if not head.startswith(_SQLITE_MAGIC):
            raise self._refuse(
                "is not an snnrobust results store (not an SQLite database)",
                "move it aside or choose another study folder",
            )
        if len(head) < 100:
            raise self._refuse(
                "is a truncated SQLite file", "move it aside and re-run the study to recompute its results"
            )
        return False

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        return conn

    def _open(self) -> None:
        fresh = self._sniff()
        conn = self._connect()
        try:
            if not fresh:
                fresh = self._check_existing(conn)
            if fresh and self.readonly:
                raise SnnRobustError(f"{self.path}: empty results store (nothing stored yet); run a study first")
            if fresh:
                self._retrying(lambda: self._initialize(conn))
            elif not self.readonly:
                # Persistent once set; re-asserting is a no-op that also covers stores copied in
                # from a machine that switched them back to rollback journaling.
                self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if not self.readonly:
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: no corruption on crash
        except BaseException:
            conn.close()
            raise
        self._conn_obj = conn

    def _check_existing(self, conn: sqlite3.Connection) -> bool:
        """Read-only checks that the file is our store. Returns True if it is an empty database."""
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise self._refuse(
                f"is a corrupt SQLite database ({e})", "move it aside and re-run the study to recompute its results"
            ) from None
        if check != "ok":
            raise self._refuse(
                f"is a corrupt SQLite database (integrity: {check})",
                "move it aside and re-run the study to recompute its results",
            )
        if not tables and app_id == 0:
            return True  # an empty database (e.g. created by sqlite3 but never written)
        if app_id != APPLICATION_ID or _META_TABLE not in tables:
            shown = ", ".join(sorted(tables)[:5]) or "none"
            raise self._refuse(
                f"is an SQLite database of another program (tables: {shown}), not an snnrobust results store",
                "move it aside or choose another study folder",
            )
        try:
            meta = dict(conn.execute(f"SELECT key, value FROM {_META_TABLE}").fetchall())
        except sqlite3.DatabaseError as e:
            raise self._refuse(f"has an unreadable metadata table ({e})",
                               "move it aside and re-run the study") from None
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise self._refuse("has no valid schema version", "move it aside and re-run the study") from None
        if version > SCHEMA_VERSION:
            raise self._refuse(
                f"was written by a newer snnrobust (store schema {version}, this version reads {SCHEMA_VERSION})",
                "upgrade snnrobust to read it",
            )
        # version < SCHEMA_VERSION would be migrated here; version 1 is the first schema.
        return False

    def _initialize(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SnnRobustError(
                f"{self.path}: this file system does not support SQLite's WAL mode (got {mode}); "
                "put the study folder on a local disk"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # A second process may have initialized the file since our check: IF NOT EXISTS and
            # OR IGNORE make this idempotent, and BEGIN IMMEDIATE serializes the two.
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.executemany(
                f"INSERT OR IGNORE INTO {_META_TABLE} (key, value) VALUES (?, ?)",
                [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)), ("created", _now())],
            )
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise ValueError(f"results store {self.path} is closed")
        if os.getpid() != self._pid:
            # A connection must not cross fork(); the child opens its own (the parent's is left alone).
            self._pid = os.getpid()
            self._conn_obj = None
            self._open()
        assert self._conn_obj is not None
        return self._conn_obj

    def _retrying(self, op):
        """Run ``op`` and retry it while another process holds the lock (beyond busy_timeout)."""
        wait_s = max(2 * self.busy_timeout_s, 10.0)
        deadline = time.monotonic() + wait_s
        delay = 0.02
        while True:
            try:
                return op()
            except sqlite3.OperationalError as e:
                if not _is_lock_error(e):
                    raise
                if time.monotonic() >= deadline:
                    raise SnnRobustError(
                        f"{self.path}: stayed locked by another process for {wait_s:.0f} s; "
                        "re-run when the other study has finished writing"
                    ) from None
                time.sleep(delay * (1 + random.random()))  # jitter: two waiters don't retry in lock step
                delay = min(delay * 2, 1.0)

    def _write(self, sql: str, params: tuple) -> int:
        if self.readonly:
            raise ValueError(f"results store {self.path} was opened read-only")

        def op() -> int:
            with self._lock:
                conn = self._conn()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    n = conn.execute(sql, params).rowcount
                    conn.execute("COMMIT")
                    return n
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

        return self._damage_guard(op)

    def _damage_guard(self, op):
        try:
            return self._retrying(op)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and _is_lock_error(e):
                raise
            raise SnnRobustError(
                f"{self.path}: the database is damaged ({e}); move it aside and re-run the study"
            ) from None

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        def op() -> list[tuple]:
            with self._lock:
                return self._conn().execute(sql, params).fetchall()

        return self._damage_guard(op)

    @staticmethod
    def _key(kind: str, checkpoint_hash: str, config: Any) -> tuple[str, str, str]:
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got {kind!r}")
        if not isinstance(checkpoint_hash, str):
            raise ValueError(f"checkpoint_hash must be a string (\"\" for none), got {type(checkpoint_hash).__name__}")
        return kind, checkpoint_hash, config_hash(config)

    @staticmethod
    def _record(row: tuple) -> Record:
        rid, kind, ck, ch, label, study, created, cfg, payload, dur = row
        return Record(rid, kind, ck, ch, label, study, created, json.loads(cfg), json.loads(payload), dur)

    # ------------------------------------------------------------------ API
    def get(self, kind: str, checkpoint_hash: str, config: Any) -> dict | None:
        """The stored payload for this key, or None."""
        rec = self.record(kind, checkpoint_hash, config)
        return None if rec is None else rec.payload

    def record(self, kind: str, checkpoint_hash: str, config: Any) -> Record | None:
        """The stored :class:`Record` (payload plus metadata) for this key, or None."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM results WHERE kind = ? AND checkpoint_hash = ? AND config_hash = ?",
            self._key(kind, checkpoint_hash, config),
        )
        return self._record(rows[0]) if rows else None

    def has(self, kind: str, checkpoint_hash: str, config: Any) -> bool:
        return bool(
            self._query(
                "SELECT 1 FROM results WHERE kind = ? AND checkpoint_hash = ? AND config_hash = ?",
                self._key(kind, checkpoint_hash, config),
            )
        )

    def put(
        self,
        kind: str,
        checkpoint_hash: str,
        config: Any,
        payload: dict,
        label: str = "",
        study: str = "",
        duration_s: float | None = None,
        *,
        replace: bool = False,
    ) -> bool:
        """Store ``payload`` (a JSON-ready dict) under the key, in one short transaction.

        Idempotent: if the key is already stored the first result is kept and nothing is
        written, unless ``replace=True``. Returns True if this call wrote the row.
        """
        key = self._key(kind, checkpoint_hash, config)
        if not isinstance(payload, dict):
            raise ValueError(f"payload must be a dict, got {type(payload).__name__}")
        payload_json = json.dumps(to_json_value(payload, allow_nan=True), sort_keys=True, separators=(",", ":"))
        params = (
            *key,
            str(label or ""),
            str(study or ""),
            _now(),
            canonical_json(config),
            payload_json,
            None if duration_s is None else float(duration_s),
        )
        on_conflict = (
            "DO UPDATE SET label = excluded.label, study = excluded.study, created = excluded.created, "
            "config_json = excluded.config_json, payload_json = excluded.payload_json, "
            "duration_s = excluded.duration_s"
            if replace
            else "DO NOTHING"
        )
        n = self._write(
            "INSERT INTO results (kind, checkpoint_hash, config_hash, label, study, created, config_json, "
            "payload_json, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (kind, checkpoint_hash, config_hash) {on_conflict}",
            params,
        )
        return n > 0

    def delete(self, kind: str, checkpoint_hash: str, config: Any) -> bool:
        """Remove one result (so the next run recomputes it). Returns True if it existed."""
        return (
            self._write(
                "DELETE FROM results WHERE kind = ? AND checkpoint_hash = ? AND config_hash = ?",
                self._key(kind, checkpoint_hash, config),
            )
            > 0
        )

    def delete_all(self, kind: str, checkpoint_hash: str) -> int:
        """Remove every result of ``kind`` under ``checkpoint_hash``; returns how many there were."""
        return self._write("DELETE FROM results WHERE kind = ? AND checkpoint_hash = ?", (kind, checkpoint_hash))

    def records(self, kind: str | None = None, study: str | None = None) -> list[Record]:
        """All results (optionally of one kind and/or study), oldest first."""
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if study is not None:
            where.append("study = ?")
            params.append(study)
        sql = f"SELECT {_COLUMNS} FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [self._record(r) for r in self._query(sql + " ORDER BY created, id", tuple(params))]

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return self._query("SELECT COUNT(*) FROM results")[0][0]
        return self._query("SELECT COUNT(*) FROM results WHERE kind = ?", (kind,))[0][0]

    def __len__(self) -> int:
        return self.count()

    def integrity_check(self) -> str:
        """SQLite's full ``PRAGMA integrity_check``: "ok" for a sound file."""
        return "; ".join(r[0] for r in self._query("PRAGMA integrity_check"))

    def export_csv(self, path: str | os.PathLike, kind: str | None = None, study: str | None = None) -> Path:
        """Write the results (one row each, headline numbers as columns) to CSV, atomically."""
        from .export import write_csv  # local: export depends on Record, defined here

        return write_csv(path, self.records(kind=kind, study=study), source=str(self.path))

    def close(self) -> None:
        with self._lock:
            if self._conn_obj is not None and os.getpid() == self._pid:
                self._conn_obj.close()
            self._conn_obj = None
            self._closed = True

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else "open")
        return f"ResultsStore({str(self.path)!r}, {state})"
