"""Trial ledger: one SQLite file per sweep (`runs/<name>/ledger.sqlite`).

Rows record each trial's state, attempts, directory and final metrics. Every write is one
`BEGIN IMMEDIATE` transaction, so parallel worker processes never lose a row. The stored spec
fingerprint guards against mixing the results of two different sweep specs, and the holders
table (`holders.py`) against two different specs running at once. A read-only or full ledger
raises `StorageError` naming the file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ablate.core.fsio import StorageError
from ablate.study import holders, ledger_db, order
from ablate.study.holders import SweepBusy, pid_alive

__all__ = ["Ledger", "SpecChanged", "SweepBusy", "StorageError"]

STATES = ("pending", "running", "done", "diverged", "failed", "blocked")
FINISHED = ("done", "diverged")
# Allowed state changes; running -> running is a resume after a killed run, running -> pending
# gives back a trial stopped by Ctrl-C or a filesystem fault (it resumes from its checkpoint);
# pending <-> blocked: a trial it waits for can never be done, or can again (`order`).
TRANSITIONS = {
    "pending": {"running", "blocked"},
    "blocked": {"pending"},
    "running": {"pending", "running", "done", "diverged", "failed"},
    "failed": {"running"},
    "done": set(),
    "diverged": set(),
}


class SpecChanged(ValueError):
    """The sweep file changed in a way that changes trials the ledger already finished."""


class Ledger:
    """The trial table of one sweep; safe to open from several processes at once."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise ValueError(f"no ledger at {self.path}; run `ablate run` first")
        self.db = ledger_db.connect(self.path, readonly=readonly)

    def close(self) -> None:
        self.db.close()

    def _write(self):
        """A transaction that takes the write lock at once (no lost updates between readers)."""
        return ledger_db.Txn(self.db, self.path)

    # ------------------------------------------------------------------ spec and rows

    def meta(self) -> dict[str, Any]:
        """The stored spec of the last `sync` (name, arms, baseline, sweep text, ...)."""
        return {r["key"]: json.loads(r["value"]) for r in self.db.execute("SELECT * FROM meta")}

    def set_meta(self, key: str, value: Any) -> None:
        """Store one meta entry (e.g. the cluster job of each trial)."""
        with self._write():
            ledger_db.write_meta(self.db, key, value)

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
            holders.hold(
                self.db,
                fingerprint=sweep.fingerprint(),
                command=" ".join(["ablate run", str(sweep.path), *sweep.cli_overrides]),
                name=sweep.name,
                where=self.path,
            )
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
                    "active, updated, waits_for) VALUES (?, ?, ?, 'pending', ?, ?, ?, 1, ?, ?) "
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
                        json.dumps(list(t.after)),
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
                ledger_db.write_meta(self.db, key, value)
        return [r["trial_id"] for r in changed]

    def rows(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        """Trial rows in insertion order, JSON columns decoded."""
        sql = "SELECT * FROM trials" + (" WHERE active = 1" if active_only else "")
        out = []
        for r in self.db.execute(sql + " ORDER BY rowid"):
            d = dict(r)
            for key in ("overrides", "config", "metrics", "waits_for"):
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
        `failed` with fewer than `max_attempts` attempts, unless it failed deterministically;
        and in each case every trial it waits for `done` (`order`; a trial that waits for one
        that can never be done becomes `blocked`). Returns the row or None.
        """
        with self._write():
            gates = self._gate(max_attempts)
            rows = self.db.execute("SELECT * FROM trials WHERE active = 1 ORDER BY rowid")
            for r in rows.fetchall():
                if trial_ids is not None and r["trial_id"] not in trial_ids:
                    continue
                if r["trial_id"] in gates:
                    continue
                runnable = (
                    r["state"] == "pending"
                    or (r["state"] == "running" and not pid_alive(r["pid"]))
                    or (
                        r["state"] == "failed"
                        and r["attempts"] < max_attempts
                        and not r["no_retry"]
                    )
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

    def _gate(self, max_attempts: int) -> dict[str, tuple[str, str]]:
        """Block or unblock the rows by `order.gates` (in a write transaction); the gates."""
        rows = [dict(r) for r in self.db.execute("SELECT * FROM trials WHERE active = 1")]
        for r in rows:
            r["waits_for"] = json.loads(r["waits_for"])
        gates = order.gates(rows, max_attempts)
        for r in rows:
            kind, reason = gates.get(r["trial_id"], ("", ""))
            if r["state"] == "pending" and kind == order.BLOCK:
                self._set(r["trial_id"], "pending", "blocked", reason=reason)
            elif r["state"] == "blocked" and kind != order.BLOCK:
                self._set(r["trial_id"], "blocked", "pending", reason="")
        return gates

    def waiting(self, max_attempts: int, trial_ids: list[str] | None = None) -> int:
        """Trials (of `trial_ids`) that wait for another trial that may still be done."""
        with self._write():
            gates = self._gate(max_attempts)
        ids = gates if trial_ids is None else trial_ids
        return sum(gates.get(t, ("",))[0] == order.WAIT for t in ids)

    def finish(
        self,
        trial_id: str,
        state: str,
        *,
        reason: str = "",
        metrics: dict[str, Any] | None = None,
        retry: bool = True,
    ) -> None:
        """Record a trial's end state (`done`, `diverged` or `failed`) and final metrics.

        `retry=False` marks a deterministic failure: `claim` never runs the trial again.
        """
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
                no_retry=int(not retry),
            )

    def release(self, trial_id: str) -> None:
        """Give back a `running` trial stopped by Ctrl-C or a filesystem fault (no attempt used)."""
        with self._write():
            row = self.db.execute(
                "SELECT state, attempts FROM trials WHERE trial_id = ?", (trial_id,)
            ).fetchone()
            if row is not None and row["state"] == "running":
                attempts = max(0, row["attempts"] - 1)
                self._set(trial_id, "running", "pending", pid=None, attempts=attempts)

    def release_dead(self) -> list[str]:
        """`release` every `running` trial whose process is gone (workers stopped by Ctrl-C)."""
        rows = self.db.execute("SELECT trial_id, pid FROM trials WHERE state = 'running'")
        dead = [r["trial_id"] for r in rows.fetchall() if not pid_alive(r["pid"])]
        for trial_id in dead:
            self.release(trial_id)
        return dead

    def release_hold(self) -> None:
        """This process no longer runs the sweep (see `holders.py`)."""
        with self._write():
            holders.release(self.db)

    def reap(self) -> list[str]:
        """Mark `running` trials whose process died as `failed` (a crashed worker)."""
        dead = []
        with self._write():
            rows = self.db.execute("SELECT * FROM trials WHERE state = 'running'").fetchall()
            for r in rows:
                if not pid_alive(r["pid"]):
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
