"""Stage order in the ledger: which trials wait for others, and which can never run.

A ledger row's `waits_for` lists the trial ids it starts from or references (`from:`,
`${trial:ARM}`; `ablate.study.stage_spec`). A trial is handed out only once every one of them
is `done`. While one is pending, running or failed with attempts left, the trial is waiting
(its row stays `pending`). When one can never be done (diverged, failed for good, or itself
blocked) the trial becomes `blocked` with the reason; if that changes (a rerun with more
attempts retries the failed one), it goes back to `pending`.
"""

from __future__ import annotations

from typing import Any

WAIT, BLOCK = "wait", "block"


def dead(row: dict[str, Any], max_attempts: int) -> bool:
    """Whether a row can never end `done` (without a change of spec or attempts)."""
    state = row["state"]
    if state in ("diverged", "blocked"):
        return True
    return state == "failed" and (bool(row["no_retry"]) or row["attempts"] >= max_attempts)


def _describe(dep: dict[str, Any]) -> str:
    why = f": {dep['reason']}" if dep.get("reason") else ""
    return f"{dep['arm']} seed {dep['seed']} ({dep['trial_id']}) ended {dep['state']}{why}"


def gates(rows: list[dict[str, Any]], max_attempts: int) -> dict[str, tuple[str, str]]:
    """{trial id: (WAIT or BLOCK, reason)} for every row that may not run now.

    A row whose dependency would be blocked by this same evaluation is blocked too (a chain
    of stages ends at once, not one run at a time).
    """
    by_id = {r["trial_id"]: r for r in rows}
    out: dict[str, tuple[str, str]] = {}
    visiting: set[str] = set()

    def gate(trial_id: str) -> tuple[str, str] | None:
        if trial_id in out or trial_id in visiting:  # a cycle cannot come from a sweep file
            return out.get(trial_id)
        visiting.add(trial_id)
        row, verdict = by_id[trial_id], None
        for dep_id in row.get("waits_for") or ():
            dep = by_id.get(dep_id)
            if dep is None:
                verdict = (BLOCK, f"waits for trial {dep_id}, which is not in the ledger")
                break
            dep_gate = gate(dep_id)
            if dep_gate is not None and dep_gate[0] == BLOCK and dep["state"] != "done":
                verdict = (
                    BLOCK,
                    f"waits for {dep['arm']} seed {dep['seed']} ({dep_id}), "
                    f"which is blocked: {dep_gate[1]}",
                )
                break
            if dead(dep, max_attempts) and dep["state"] != "blocked":
                verdict = (BLOCK, f"waits for {_describe(dep)}")
                break
            if dep["state"] != "done" and verdict is None:
                verdict = (WAIT, f"waits for {dep['arm']} seed {dep['seed']} ({dep_id})")
        visiting.discard(trial_id)
        if verdict is not None:
            out[trial_id] = verdict
        return verdict

    for r in rows:
        gate(r["trial_id"])
    return out


def num_waiting(rows: list[dict[str, Any]]) -> int:
    """Pending rows with a dependency that is not done yet (`ablate status`'s `waiting`)."""
    states = {r["trial_id"]: r["state"] for r in rows}
    return sum(
        r["state"] == "pending" and any(states.get(d) != "done" for d in r.get("waits_for") or ())
        for r in rows
    )
