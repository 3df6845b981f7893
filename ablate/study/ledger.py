"""Trial ledger: one SQLite file per sweep (`runs/<name>/ledger.sqlite`).

Rows record each trial's state, attempts, directory and final metrics. Every write is one
`BEGIN IMMEDIATE` transaction, so parallel worker processes never lose a row. The stored spec
fingerprint guards against mixing the results of two different sweep specs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

STATES = ("pending", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged")
TRANSITIONS = {  # allowed state changes; running -> running is a resume after a killed run
    "pending": {"running"},
    "running": {"running", "done", "diverged", "failed"},
    "failed": {"running"},
    "done": set(),
    "diverged": set(),
}
LOCK_TIMEOUT_S = 60.0  # how long a writer waits for another process's transaction
_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY, arm TEXT NOT NULL, seed INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, path TEXT NOT NULL,
    overrides TEXT NOT NULL, config TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}', active INTEGER NOT NULL DEFAULT 1,
    pid INTEGER, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SpecChanged(ValueError):
    """The sweep file changed in a way that changes trials the ledger already finished."""


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Ledger:
    """The trial table of one sweep; safe to open from several processes at once."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise ValueError(f"no ledger at {self.path}; run `ablate run` first")
            uri = f"file:{self.path.resolve()}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def _write(self):
        """A transaction that takes the write lock at once (no lost updates between readers)."""
        return _Txn(self.db)

    # ------------------------------------------------------------------ spec and rows

    def meta(self) -> dict[str, Any]:
        """The stored spec of the last `sync` (name, arms, baseline, sweep text, ...)."""
        return {r["key"]: json.loads(r["value"]) for r in self.db.execute("SELECT * FROM meta")}

    def sync(self, sweep, *, force: bool = False, extra_meta: dict | None = None) -> list[str]:
        """Add the sweep's trials as `pending` rows and store its spec.

        Raises `SpecChanged` when an (arm, seed) whose trial already finished now resolves to a
        different config, unless `force`; then the old rows stay in the file but are marked
        inactive (reports and runs ignore them). Returns the ids of the changed trials.
        """
        from ablate.core.config import to_dict

        wanted = {(t.arm, t.seed): t for t in sweep.trials}
        ids = {t.trial_id for t in sweep.trials}
        with self._write():
            rows = self.db.execute("SELECT trial_id, arm, seed, state FROM trials").fetchall()
            changed = [
                r
                for r in rows
                if r["state"] in FINISHED
                and r["trial_id"] not in ids
                and (r["arm"], r["seed"]) in wanted
            ]
            if changed and not force:
                lines = "\n".join(
                    f"  {r['arm']} seed {r['seed']}: {r['trial_id']} -> "
                    f"{wanted[(r['arm'], r['seed'])].trial_id}"
                    for r in changed
                )
                raise SpecChanged(
                    f"{sweep.path}: the sweep spec changed since {self.path} was written, and "
                    f"this changes {len(changed)} finished trial(s):\n{lines}\nRevert the "
                    "change, rename the sweep, or pass --force (--allow-changed) to start "
                    "new trials and mark the old ones inactive"
                )
            self.db.execute("UPDATE trials SET active = 0")
            now = time.time()
            for t in sweep.trials:
                path = str(sweep.run_dir / "trials" / t.trial_id)
                self.db.execute(
                    "INSERT INTO trials (trial_id, arm, seed, state, path, overrides, config, "
                    "active, updated) VALUES (?, ?, ?, 'pending', ?, ?, ?, 1, ?) "
                    "ON CONFLICT(trial_id) DO UPDATE SET arm = excluded.arm, "
                    "seed = excluded.seed, active = 1",
                    (
                        t.trial_id,
                        t.arm,
                        t.seed,
                        path,
                        json.dumps(t.overrides, default=str),
                        json.dumps(to_dict(t.cfg)),
                        now,
                    ),
                )
            meta = {
                "fingerprint": sweep.fingerprint(),
                "name": sweep.name,
                "baseline": sweep.baseline,
                "arms": list(sweep.arms),
                "seeds": list(sweep.seeds),
                "sweep_path": str(sweep.path),
                "sweep_text": sweep.text,
                "cli_overrides": list(sweep.cli_overrides),
                "report": sweep.report,
                **(extra_meta or {}),
            }
            for key, value in meta.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))
                )
        return [r["trial_id"] for r in changed]

    def rows(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        """Trial rows in insertion order, JSON columns decoded."""
        sql = "SELECT * FROM trials" + (" WHERE active = 1" if active_only else "")
        out = []
        for r in self.db.execute(sql + " ORDER BY rowid"):
            d = dict(r)
            for key in ("overrides", "config", "metrics"):
                d[key] = json.loads(d[key])
            out.append(d)
        return out

    def get(self, trial_id: str) -> dict[str, Any]:
        rows = [r for r in self.rows(active_only=False) if r["trial_id"] == trial_id]
        if not rows:
            raise KeyError(trial_id)
        return rows[0]

    # ------------------------------------------------------------------ state changes

    def claim(self, max_attempts: int, trial_ids: list[str] | None = None) -> dict | None:
        """Atomically take the next runnable trial and mark it `running` by this process.

        Runnable: `pending`; `running` whose process is gone (resumed from its checkpoint);
        `failed` with fewer than `max_attempts` attempts. Returns the row or None.
        """
        with self._write():
            rows = self.db.execute("SELECT * FROM trials WHERE active = 1 ORDER BY rowid")
            for r in rows.fetchall():
                if trial_ids is not None and r["trial_id"] not in trial_ids:
                    continue
                runnable = (
                    r["state"] == "pending"
                    or (r["state"] == "running" and not _pid_alive(r["pid"]))
                    or (r["state"] == "failed" and r["attempts"] < max_attempts)
                )
                if runnable:
                    self._set(
                        r["trial_id"],
                        r["state"],
                        "running",
                        attempts=r["attempts"] + 1,
                        pid=os.getpid(),
                    )
                    return self.get(r["trial_id"])
        return None

    def finish(
        self, trial_id: str, state: str, *, reason: str = "", metrics: dict[str, Any] | None = None
    ) -> None:
        """Record a trial's end state (`done`, `diverged` or `failed`) and final metrics."""
        with self._write():
            row = self.db.execute(
                "SELECT state FROM trials WHERE trial_id = ?", (trial_id,)
            ).fetchone()
            if row is None:
                raise KeyError(trial_id)
            self._set(
                trial_id,
                row["state"],
                state,
                reason=reason,
                pid=None,
                metrics=json.dumps(metrics or {}, default=str),
            )

    def reap(self) -> list[str]:
        """Mark `running` trials whose process died as `failed` (a crashed worker)."""
        dead = []
        with self._write():
            rows = self.db.execute("SELECT * FROM trials WHERE state = 'running'").fetchall()
            for r in rows:
                if not _pid_alive(r["pid"]):
                    self._set(
                        r["trial_id"],
                        "running",
                        "failed",
                        pid=None,
                        reason="the worker process running this trial died",
                    )
                    dead.append(r["trial_id"])
        return dead

    def _set(self, trial_id: str, old: str, new: str, **fields: Any) -> None:
        if new not in TRANSITIONS[old]:
            raise ValueError(f"trial {trial_id}: illegal state change {old} -> {new}")
        fields = {"state": new, "updated": time.time(), **fields}
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(
            f"UPDATE trials SET {cols} WHERE trial_id = ?", (*fields.values(), trial_id)
        )


class _Txn:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
