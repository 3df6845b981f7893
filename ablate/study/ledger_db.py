"""SQLite plumbing of the ledger: schema, connections, write transactions, filesystem faults.

sqlite3 reports a read-only, full or unopenable file only in its message text; every such error
becomes a `StorageError` naming the ledger file.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from ablate.core.fsio import StorageError
from ablate.study import holders

_EFFECTIVE = os.access in os.supports_effective_ids
LOCK_TIMEOUT_S = 60.0  # how long a writer waits for another process's transaction
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY, arm TEXT NOT NULL, seed INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, path TEXT NOT NULL,
    overrides TEXT NOT NULL, config TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}', active INTEGER NOT NULL DEFAULT 1,
    pid INTEGER, updated REAL NOT NULL, no_retry INTEGER NOT NULL DEFAULT 0,
    waits_for TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
    + holders.SCHEMA
)
_FAULTS = (  # (text in sqlite's message, the errno it stands for)
    ("readonly", errno.EACCES),
    ("full", errno.ENOSPC),
    ("unable to open", errno.EACCES),
    ("disk i/o", errno.EIO),
)


def storage_error(exc: sqlite3.Error, path: Path) -> StorageError | None:
    """The `StorageError` an sqlite error stands for, or None if it is not a filesystem fault."""
    text = str(exc).lower()
    for needle, err in _FAULTS:
        if needle in text:
            return StorageError(err, f"{os.strerror(err)} ({exc})", str(path))
    return None


def _reraise(exc: sqlite3.Error, path: Path) -> None:
    fault = storage_error(exc, path)
    if fault is not None:
        raise fault from exc
    raise exc


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open the ledger (read-only, or creating its directory, schema and new columns)."""
    db = None
    try:
        if readonly:
            uri = f"file:{path.resolve()}?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=LOCK_TIMEOUT_S, isolation_level=None)
            db.row_factory = sqlite3.Row
            return db
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not os.access(path, os.W_OK, effective_ids=_EFFECTIVE):
            # before sqlite opens it: a read-only open leaves read-only -wal/-shm files behind
            raise StorageError(errno.EACCES, "Permission denied (read-only file)", str(path))
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        with Txn(db, path):
            cols = {r["name"] for r in db.execute("PRAGMA table_info(trials)")}
            if "no_retry" not in cols:  # ledgers written before deterministic failures
                db.execute("ALTER TABLE trials ADD COLUMN no_retry INTEGER NOT NULL DEFAULT 0")
            if "waits_for" not in cols:  # ledgers written before stages (ablate.study.order)
                db.execute("ALTER TABLE trials ADD COLUMN waits_for TEXT NOT NULL DEFAULT '[]'")
    except sqlite3.Error as e:
        if db is not None:
            db.close()  # a connection opened read-only would keep the file read-only to us
        _reraise(e, path)
    return db


def read_meta(db: sqlite3.Connection, key: str) -> Any:
    """One meta entry, JSON-decoded; None where it is absent."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def write_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
    """Store one meta entry as JSON (inside the caller's transaction)."""
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))


class Txn:
    """`BEGIN IMMEDIATE` ... `COMMIT` (the write lock at once: no lost updates between readers)."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db, self.path = db, path

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            _reraise(e, self.path)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.Error as e:
            if exc_type is None:
                _reraise(e, self.path)
        if isinstance(exc, sqlite3.Error) and (fault := storage_error(exc, self.path)):
            raise fault from exc
