"""Stage order in the ledger (`ablate.study.order`): a child trial is handed out only after its
parent is done, waits while the parent may still finish, is blocked (with the reason) when
it cannot, and goes back to pending when a rerun allows the parent another attempt."""

from __future__ import annotations

import os

import pytest

from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from ablate.study.trial_table import counts
from tests.ablate.sweep_helpers import write_sweep

ARMS = {
    "base": {},
    "ft_hi": {"from": "base", "train.steps": 3, "train.lr": 1e-3},
    "ft_lo": {"from": "base", "train.steps": 3, "train.lr": 1e-4},
    "grand": {"from": "ft_hi", "train.steps": 2},
}


@pytest.fixture
def sweep(tmp_path):
    return load_sweep(write_sweep(tmp_path, arms=ARMS, baseline="base", seeds=(0,)))


def _ids(sweep) -> dict[str, str]:
    return {t.arm: t.trial_id for t in sweep.trials}


def _states(ledger) -> dict[str, str]:
    return {r["arm"]: r["state"] for r in ledger.rows()}


def test_two_workers_children_wait_for_the_parent(sweep, tmp_path):
    path = tmp_path / "ledger.sqlite"
    one, two = Ledger(path), Ledger(path)  # two workers' connections
    one.sync(sweep)
    ids = _ids(sweep)
    assert one.claim(2)["arm"] == "base"
    assert two.claim(2) is None  # every other trial waits for base
    assert two.waiting(2) == 3  # ft_hi, ft_lo and grand may still run: keep polling
    c = counts(two.rows())
    assert (c["running"], c["waiting"], c["pending"], c["blocked"]) == (1, 3, 0, 0)
    one.finish(ids["base"], "done")
    got = {one.claim(2)["arm"], two.claim(2)["arm"]}
    assert got == {"ft_hi", "ft_lo"}  # both children at once, on the two workers
    assert one.claim(2) is None and one.waiting(2) == 1  # grand waits for ft_hi
    one.finish(ids["ft_lo"], "done")
    one.finish(ids["ft_hi"], "done")
    assert two.claim(2)["arm"] == "grand"
    one.close()
    two.close()


def test_failed_parent_blocks_the_chain_with_a_message(sweep, tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.sync(sweep)
    ids = _ids(sweep)
    ledger.claim(1)
    ledger.finish(ids["base"], "failed", reason="RuntimeError: boom")
    assert ledger.claim(1) is None and ledger.waiting(1) == 0  # nothing left to wait for
    rows = {r["arm"]: r for r in ledger.rows()}
    assert {a: r["state"] for a, r in rows.items()} == {
        "base": "failed",
        "ft_hi": "blocked",
        "ft_lo": "blocked",
        "grand": "blocked",  # blocked at once through ft_hi, not one run later
    }
    assert rows["ft_hi"]["reason"] == (
        f"waits for base seed 0 ({ids['base']}) ended failed: RuntimeError: boom"
    )
    assert rows["grand"]["reason"].startswith(f"waits for ft_hi seed 0 ({ids['ft_hi']}), which")
    assert counts(ledger.rows())["blocked"] == 3
    # a rerun that allows another attempt: base runs again and its children wait again
    assert ledger.claim(2)["arm"] == "base"
    assert _states(ledger) == {
        "base": "running",
        "ft_hi": "pending",
        "ft_lo": "pending",
        "grand": "pending",
    }
    assert all(r["reason"] == "" for r in ledger.rows() if r["arm"] != "base")
    ledger.close()


def test_diverged_parent_blocks_for_good(sweep, tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.sync(sweep)
    ids = _ids(sweep)
    ledger.claim(2)
    ledger.finish(ids["base"], "diverged", reason="non-finite training loss at step 3")
    assert ledger.claim(5) is None
    reason = ledger.get(ids["ft_lo"])["reason"]
    assert "ended diverged: non-finite training loss at step 3" in reason


def test_a_killed_parent_resumes_before_its_children(sweep, tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.sync(sweep)
    ids = _ids(sweep)
    ledger.claim(2)
    dead = os.fork()  # a process that exits at once: its pid is a dead worker's
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    ledger.db.execute("UPDATE trials SET pid = ? WHERE trial_id = ?", (dead, ids["base"]))
    again = ledger.claim(2)
    assert again["arm"] == "base" and again["attempts"] == 2  # resumed from its checkpoint
    ledger.finish(ids["base"], "done")
    assert ledger.claim(2)["arm"] == "ft_hi"
    ledger.close()


def test_a_ledger_from_before_stages_gains_the_column(sweep, tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE trials (trial_id TEXT PRIMARY KEY, arm TEXT NOT NULL, seed INTEGER NOT "
        "NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, path TEXT NOT NULL, "
        "overrides TEXT NOT NULL, config TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', "
        "metrics TEXT NOT NULL DEFAULT '{}', active INTEGER NOT NULL DEFAULT 1, pid INTEGER, "
        "updated REAL NOT NULL)"
    )
    db.execute(
        "INSERT INTO trials VALUES ('x', 'a', 0, 'done', 1, 'p', '{}', '{}', '', '{}', 1, NULL, 0)"
    )
    db.commit()
    db.close()
    ledger = Ledger(path)
    assert ledger.rows()[0]["waits_for"] == []
    ledger.close()
