"""Trial ledger: state transitions, retries, dead-process resume, spec changes, parallel writers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ablate.study.ledger import Ledger, SpecChanged, SweepBusy
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

NUM_WRITERS = 4
NUM_SEEDS = 24


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load_sweep(write_sweep(tmp_path, seeds=(0, 1)))


def test_transitions_and_retry_limit(sweep):
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep)
    rows = ledger.rows()
    assert [r["state"] for r in rows] == ["pending"] * 4
    assert rows[0]["path"] == str(sweep.run_dir / "trials" / rows[0]["trial_id"])
    first = ledger.claim(max_attempts=2)
    assert (first["state"], first["attempts"]) == ("running", 1)
    ledger.finish(first["trial_id"], "done", metrics={"val_loss": 1.5})
    assert ledger.get(first["trial_id"])["metrics"] == {"val_loss": 1.5}
    with pytest.raises(ValueError, match="illegal state change done -> failed"):
        ledger.finish(first["trial_id"], "failed")
    second = ledger.claim(max_attempts=2)
    assert second["trial_id"] != first["trial_id"]
    ledger.finish(second["trial_id"], "failed", reason="boom")
    again = ledger.claim(max_attempts=2)  # a failed trial is retried first (it comes first)
    assert (again["trial_id"], again["attempts"]) == (second["trial_id"], 2)
    ledger.finish(second["trial_id"], "failed", reason="boom again")
    rest = [ledger.claim(max_attempts=2) for _ in range(3)]
    assert rest[2] is None  # the failed trial used its 2 attempts; two pending ones remain
    assert {r["trial_id"] for r in rest[:2]}.isdisjoint({first["trial_id"], second["trial_id"]})
    assert ledger.get(second["trial_id"])["reason"] == "boom again"


def test_running_trial_of_a_dead_process_is_resumed(sweep):
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep)
    row = ledger.claim(max_attempts=1)
    ledger.db.execute(
        "UPDATE trials SET pid = ? WHERE trial_id = ?", (_dead_pid(), row["trial_id"])
    )
    resumed = ledger.claim(max_attempts=1)
    assert (resumed["trial_id"], resumed["attempts"]) == (row["trial_id"], 2)
    other = ledger.claim(max_attempts=1)  # ours is alive now: not claimed twice
    assert other["trial_id"] != row["trial_id"]
    ledger.db.execute(
        "UPDATE trials SET pid = ? WHERE trial_id = ?", (_dead_pid(), other["trial_id"])
    )
    assert ledger.reap() == [other["trial_id"]]
    assert ledger.get(other["trial_id"])["state"] == "failed"
    assert ledger.get(row["trial_id"])["state"] == "running"


def test_changed_spec_is_refused_unless_forced(sweep, tmp_path):
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep)
    done = ledger.claim(max_attempts=1)
    ledger.finish(done["trial_id"], "done")
    grown = load_sweep(write_sweep(tmp_path, seeds=(0, 1, 2)))  # adds trials: allowed
    assert ledger.sync(grown) == []
    assert len(ledger.rows()) == 6
    changed = load_sweep(write_sweep(tmp_path, seeds=(0, 1)), ["train.lr=0.01"])
    with pytest.raises(SpecChanged, match="changes 1 finished trial"):
        ledger.sync(changed)
    assert ledger.meta()["fingerprint"] == grown.fingerprint()
    assert ledger.sync(changed, force=True) == [done["trial_id"]]
    active = ledger.rows()
    assert {r["trial_id"] for r in active} == {t.trial_id for t in changed.trials}
    assert all(r["state"] == "pending" for r in active)
    old = ledger.get(done["trial_id"])
    assert (old["state"], old["active"]) == ("done", 0)  # kept, but never mixed into results
    assert ledger.meta()["fingerprint"] == changed.fingerprint()


# Each writer is a fresh interpreter importing only the ledger (no torch): fast to start.
WRITER = """
import sys
from ablate.study.ledger import Ledger
ledger = Ledger(sys.argv[1])
while (row := ledger.claim(max_attempts=1)) is not None:
    ledger.finish(row["trial_id"], "done", metrics={"seed": row["seed"]})
"""


def test_parallel_writers_lose_no_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, arms={"a": {}}, seeds=tuple(range(NUM_SEEDS))))
    path = sweep.run_dir / "ledger.sqlite"
    Ledger(path).sync(sweep)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path)]) for _ in range(NUM_WRITERS)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * NUM_WRITERS
    rows = Ledger(path, readonly=True).rows()
    assert len(rows) == NUM_SEEDS
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in rows)
    assert sorted(r["metrics"]["seed"] for r in rows) == list(range(NUM_SEEDS))


def _holder(ledger: Ledger, pid: int, fingerprint: str) -> None:
    import socket

    ledger.db.execute(
        "INSERT INTO holders VALUES (?, ?, '', 0, ?, 'ablate run other.yaml')",
        (pid, socket.gethostname(), fingerprint),
    )


def test_a_live_run_of_another_spec_holds_the_sweep(sweep, tmp_path):
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep)
    other = load_sweep(write_sweep(tmp_path, seeds=(0, 1)), ["train.lr=0.01"])
    live = subprocess.Popen(["sleep", "30"])  # another live `ablate run` of this sweep
    try:
        _holder(ledger, live.pid, other.fingerprint())
        with pytest.raises(SweepBusy, match=rf"different spec by pid {live.pid} on host") as e:
            ledger.sync(sweep)
        assert "ablate run other.yaml" in str(e.value) and "name:" in str(e.value)
        assert {r["trial_id"] for r in ledger.rows()} == {t.trial_id for t in sweep.trials}
        ledger.db.execute("UPDATE holders SET fingerprint = ?", (sweep.fingerprint(),))
        ledger.sync(sweep)  # the same spec joins: the work splits between the two
        pids = {r["pid"] for r in ledger.db.execute("SELECT pid FROM holders")}
        assert pids == {live.pid, os.getpid()}
    finally:
        live.kill()
        live.wait()
    ledger.db.execute("UPDATE holders SET fingerprint = 'x' WHERE pid = ?", (live.pid,))
    ledger.sync(other)  # a dead holder is stale: it blocks nothing
    ledger.release_hold()
    assert ledger.db.execute("SELECT COUNT(*) FROM holders").fetchone()[0] == 0


def test_deterministic_failure_is_not_retried_and_release_keeps_attempts(sweep):
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep)
    first = ledger.claim(max_attempts=3)
    ledger.finish(first["trial_id"], "failed", reason="ValueError: bad", retry=False)
    second = ledger.claim(max_attempts=3)
    ledger.release(second["trial_id"])  # Ctrl-C or a disk fault: given back, no attempt used
    row = ledger.get(second["trial_id"])
    assert (row["state"], row["attempts"], row["pid"]) == ("pending", 0, None)
    claimed = [ledger.claim(max_attempts=3) for _ in range(4)]
    assert claimed[3] is None
    assert first["trial_id"] not in {r["trial_id"] for r in claimed[:3]}
    assert ledger.claim(max_attempts=3, trial_ids=[first["trial_id"]]) is None
