"""Which `ablate run` processes hold a sweep's ledger, so two different specs never share it.

Each running `ablate run` adds a row (pid, host, process start time, spec fingerprint) to the
ledger's `holders` table inside the transaction that syncs its trials. A second run with the same
fingerprint joins (the work splits between them); one with another fingerprint is refused with
`SweepBusy`. A holder whose process is gone from this host is stale and dropped.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS holders (
    pid INTEGER NOT NULL, host TEXT NOT NULL, pstart TEXT NOT NULL, started REAL NOT NULL,
    fingerprint TEXT NOT NULL, command TEXT NOT NULL, PRIMARY KEY (pid, host));
"""


class SweepBusy(ValueError):
    """Another `ablate run` with a different spec is running this sweep."""


def pid_alive(pid: int | None) -> bool:
    """True if a process with this id exists on this host."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def process_start(pid: int) -> str:
    """The kernel's start time of `pid` (tells a reused pid apart); empty where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _stale(row: sqlite3.Row, host: str) -> bool:
    if row["host"] != host:
        return False  # cannot look at another machine's processes
    if not pid_alive(row["pid"]):
        return True
    return bool(row["pstart"]) and process_start(row["pid"]) != row["pstart"]


def hold(db: sqlite3.Connection, *, fingerprint: str, command: str, name: str, where: Path) -> None:
    """Register this process as a holder; call inside a write transaction.

    Raises:
        SweepBusy: a live holder runs another spec.
    """
    host, pid = socket.gethostname(), os.getpid()
    for row in db.execute("SELECT * FROM holders").fetchall():
        mine = row["pid"] == pid and row["host"] == host
        if mine or _stale(row, host):
            db.execute("DELETE FROM holders WHERE pid = ? AND host = ?", (row["pid"], row["host"]))
        elif row["fingerprint"] != fingerprint:
            raise SweepBusy(_busy_message(row, name, where, host))
    db.execute(
        "INSERT INTO holders VALUES (?, ?, ?, ?, ?, ?)",
        (pid, host, process_start(pid), time.time(), fingerprint, command),
    )


def release(db: sqlite3.Connection) -> None:
    """Remove this process's holder row; call inside a write transaction."""
    db.execute(
        "DELETE FROM holders WHERE pid = ? AND host = ?", (os.getpid(), socket.gethostname())
    )


def _busy_message(row: sqlite3.Row, name: str, where: Path, host: str) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started"]))
    stop = (
        f"stop it (Ctrl-C in its terminal, or kill -INT {row['pid']})"
        if row["host"] == host
        else f"stop it on {row['host']}"
    )
    return (
        f"sweep {name!r} is being run with a different spec by pid {row['pid']} on host "
        f"{row['host']}, started {started} (`{row['command']}`); running both would mix their "
        f"trials in {where}. Wait for it to finish, {stop}, or give this spec its own sweep "
        "name (`name:` in the sweep file)"
    )
