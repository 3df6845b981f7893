"""A sweep's trials as tables: the ledger's path, state counts, the dry run's trial table.

With stages (`from:`, `${trial:ARM}`) a pending trial that waits for another is counted as
`waiting`, and the trial table names what each trial runs after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.study.ledger import Ledger
from ablate.study.order import num_waiting

LEDGER = "ledger.sqlite"
# `waiting`: pending, but a trial it starts from or references is not done yet (ablate.study.order)
STATE_ORDER = ("done", "diverged", "failed", "blocked", "running", "waiting", "pending")


def ledger_path(sweep) -> Path:
    """`runs/<name>/ledger.sqlite`."""
    return sweep.run_dir / LEDGER


def counts(rows: list[dict]) -> dict[str, int]:
    """Number of ledger rows per state; pending rows that wait for another trial: `waiting`."""
    out = {s: sum(r["state"] == s for r in rows) for s in STATE_ORDER}
    out["waiting"] = num_waiting(rows)
    out["pending"] -= out["waiting"]
    return out


def after_text(sweep, trial) -> str:
    """What a trial runs after: `base:<id>` per trial it starts from or references."""
    arms = {t.trial_id: t.arm for t in sweep.trials}
    return ", ".join(f"{arms[i]}:{i}" for i in trial.after)


def trial_table(sweep) -> list[dict[str, Any]]:
    """The trials with their ledger state (`new` if the ledger has no row); writes nothing."""
    states: dict[str, dict] = {}
    if ledger_path(sweep).exists():
        ledger = Ledger(ledger_path(sweep), readonly=True)
        states = {r["trial_id"]: r for r in ledger.rows(active_only=False)}
        ledger.close()
    out = []
    for t in sweep.trials:
        row = states.get(t.trial_id, {})
        state = row.get("state", "new")
        unmet = [i for i in t.after if states.get(i, {}).get("state") != "done"]
        out.append(
            {
                "arm": t.arm,
                "seed": t.seed,
                "trial_id": t.trial_id,
                "state": "waiting" if unmet and state in ("new", "pending") else state,
                "attempts": row.get("attempts", 0),
                "after": after_text(sweep, t),
                "overrides": t.overrides,
            }
        )
    return out


def changed_finished(sweep) -> list[dict[str, Any]]:
    """Finished ledger rows whose (arm, seed) now resolves to another trial (a changed spec)."""
    if not ledger_path(sweep).exists():
        return []
    ledger = Ledger(ledger_path(sweep), readonly=True)
    rows = ledger.rows()
    ledger.close()
    ids = {t.trial_id for t in sweep.trials}
    keys = {(t.arm, t.seed) for t in sweep.trials}
    return [
        r
        for r in rows
        if r["state"] in ("done", "diverged")
        and r["trial_id"] not in ids
        and (r["arm"], r["seed"]) in keys
    ]


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Plain aligned text table."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
