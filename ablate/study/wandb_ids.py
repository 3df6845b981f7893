"""W&B run ids: unique per sweep directory, the same for every attempt of a trial.

A trial id is the hash of its resolved config, so one trial in two sweep directories (a copied
sweep, two run directories of one config) has one id; as a W&B run id it would merge both into
one run of the project. The run id is `<trial id>-<token>`, the token random, made once per sweep
directory and kept in its ledger's meta together with the directory's path:

- a resume (any later `ablate run` of the directory) reads the same token: the trial continues
  its own run;
- a moved directory (its old path gone) keeps the token and records the new path;
- a copy (the recorded directory still there, holding the same token) gets a new token, so
  its trials start runs of their own.
"""

from __future__ import annotations

import re
import secrets
import warnings
from pathlib import Path

from ablate.study import ledger_db

TOKEN_KEY = "wandb_token"  # ledger meta: {"token": hex, "dir": the sweep directory's path}
TOKEN_BYTES = 4  # 8 hex digits: a collision needs ~65k copies of one sweep in one project
MAX_ID = 64  # W&B run ids: at most 64 characters of [a-z0-9_-]
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]")


def run_id(trial_id: str, token: str) -> str:
    """`<trial id>-<token>`, lowercase, other characters as `-`, the trial id cut to fit."""
    tail = f"-{_NOT_ALLOWED.sub('-', token.lower())}"
    return _NOT_ALLOWED.sub("-", trial_id.lower())[: MAX_ID - len(tail)] + tail


def _token_at(sweep_dir: Path, ledger_name: str) -> str | None:
    """The token the ledger in `sweep_dir` holds: None where there is no ledger or it holds none,
    "" where it cannot be read."""
    path = sweep_dir / ledger_name
    if not path.exists():
        return None
    try:
        db = ledger_db.connect(path, readonly=True)
    except Exception:  # unreadable: counted as still there, so the copy gets its own token
        return ""
    try:
        return (ledger_db.read_meta(db, TOKEN_KEY) or {}).get("token")
    finally:
        db.close()


def sweep_token(ledger) -> str:
    """The sweep directory's token (the directory holding `ledger`), made or updated when the
    directory is new, was moved or is a copy; one write transaction, so concurrent drivers and
    workers agree on one token."""
    here = ledger.path.parent.resolve()
    rec = ledger_db.read_meta(ledger.db, TOKEN_KEY)
    if rec and rec.get("dir") == str(here):
        return rec["token"]  # the common case: no write
    with ledger_db.Txn(ledger.db, ledger.path):
        # another process may have written it meanwhile
        rec = ledger_db.read_meta(ledger.db, TOKEN_KEY)
        if rec and rec.get("dir") == str(here):
            return rec["token"]
        token = rec["token"] if rec else ""
        there = _token_at(Path(rec["dir"]), ledger.path.name) if rec else None
        if there is not None and there in ("", token):  # the recorded directory holds it still
            warnings.warn(
                f"{ledger.path}: a copy of the sweep in {rec['dir']}; its trials get W&B runs "
                "of their own (a new run id token)",
                stacklevel=2,
            )
            token = ""
        token = token or secrets.token_hex(TOKEN_BYTES)
        ledger_db.write_meta(ledger.db, TOKEN_KEY, {"token": token, "dir": str(here)})
    return token
