"""Executors: a sweep through submitit's local executor (and a local Ray, when installed) gives
the trial ids and validation losses of the local pool; a killed job resumes from its checkpoint;
a rerun reattaches to the jobs the ledger names instead of resubmitting them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.study import executors
from ablate.study.executors import Executor, Handle
from ablate.study.launch import ledger_path, run_sweep
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from ablate.study.workers import gpu_slices
from tests.ablate.sweep_helpers import write_sweep


def _need_submitit() -> None:
    pytest.importorskip(
        "submitit", reason="submitit not installed (pip install 'ablate-lm[slurm]')"
    )


def _run(directory: Path, monkeypatch, executor: str, **spec) -> dict[str, tuple]:
    """Run a tiny sweep in `directory`; {trial_id: (state, val_loss, resumed_from)}."""
    directory.mkdir()
    monkeypatch.chdir(directory)
    sweep = load_sweep(write_sweep(directory, **spec))
    assert run_sweep(sweep, executor=executor, stream=io.StringIO()) == 0
    ledger = Ledger(ledger_path(sweep), readonly=True)
    rows, jobs = ledger.rows(), ledger.meta().get("jobs", {})
    ledger.close()
    if executor != "local":
        assert set(jobs) == {r["trial_id"] for r in rows}  # every job id is in the ledger
    out = {}
    for r in rows:
        summary = json.loads((Path(r["path"]) / "summary.json").read_text())
        out[r["trial_id"]] = (r["state"], r["metrics"]["val_loss"], summary["resumed_from"])
    return out


def test_submitit_local_equals_local(tmp_path, monkeypatch):
    _need_submitit()
    local = _run(tmp_path / "local", monkeypatch, "local")
    assert _run(tmp_path / "submitit", monkeypatch, "submitit_local") == local
    assert {s for s, _, _ in local.values()} == {"done"}


@pytest.mark.slow
def test_ray_local_equals_local(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="ray not installed (pip install 'ablate-lm[ray]')")
    local = _run(tmp_path / "local", monkeypatch, "local")
    assert _run(tmp_path / "ray", monkeypatch, "ray") == local


@pytest.mark.slow
def test_killed_job_resumes_from_checkpoint(tmp_path, monkeypatch):
    """SIGKILL a job once its trial has a checkpoint: the driver resubmits, the trial resumes
    and ends with the validation loss of a run that was never killed."""
    _need_submitit()
    spec = {"arms": {"a": {}}, "seeds": (0,), "steps": 400}
    local = _run(tmp_path / "local", monkeypatch, "local", **spec)
    killed = []

    def kill_once(run_dir: Path) -> None:
        ledger_file = run_dir / "ledger.sqlite"
        for _ in range(600):
            time.sleep(0.05)
            if not list(run_dir.glob("trials/*/checkpoint.pt")) or not ledger_file.exists():
                continue
            ledger = Ledger(ledger_file, readonly=True)
            jobs = ledger.meta().get("jobs", {})
            ledger.close()
            for rec in jobs.values():  # the job: submitit's controller and the task it runs
                pids = [int(rec["job_id"]), *_children(int(rec["job_id"]))]
                for pid in reversed(pids):
                    os.kill(pid, signal.SIGKILL)
                killed.append(rec["job_id"])
            if killed:
                return

    watcher = threading.Thread(target=kill_once, args=(tmp_path / "submitit" / "runs" / "t",))
    watcher.start()
    resumed = _run(tmp_path / "submitit", monkeypatch, "submitit_local", **spec)
    watcher.join()
    assert killed
    ((state, val_loss, resumed_from),) = resumed.values()
    ((_, local_val_loss, _),) = local.values()
    assert state == "done" and resumed_from > 0 and val_loss == local_val_loss


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


class _Done(Handle):
    def __init__(self, trial_id: str, finished: bool) -> None:
        self.record = {"executor": "fake", "job_id": f"job-{trial_id}", "trial_id": trial_id}
        self.finished = finished

    def done(self) -> bool:
        if not self.finished:
            raise KeyboardInterrupt  # the driver is stopped while its jobs run
        return True

    def outcome(self) -> dict:
        return {"status": "done", "summary": {"val_loss": 1.5, "metrics": {}}}


class _Fake(Executor):
    name = "fake"

    def __init__(self, finished: bool) -> None:
        self.finished, self.submitted, self.reattached = finished, [], []

    def submit(self, jobs):
        self.submitted += [j["trial_id"] for j in jobs]
        return [_Done(j["trial_id"], self.finished) for j in jobs]

    def reattach(self, record):
        self.reattached.append(record["trial_id"])
        return _Done(record["trial_id"], True)


def test_rerun_reattaches_instead_of_resubmitting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path))
    ledger = Ledger(ledger_path(sweep))
    ledger.sync(sweep)
    first = _Fake(finished=False)
    with pytest.raises(KeyboardInterrupt):
        executors.drive(sweep, ledger, first, io.StringIO(), poll_s=0)
    ids = sorted(t.trial_id for t in sweep.trials)
    assert sorted(first.submitted) == ids
    assert {r["state"] for r in ledger.rows()} == {"running"}
    second = _Fake(finished=True)
    executors.drive(sweep, ledger, second, io.StringIO(), poll_s=0)
    assert second.submitted == [] and sorted(second.reattached) == ids
    rows = ledger.rows()
    assert {r["state"] for r in rows} == {"done"} and {r["attempts"] for r in rows} == {1}
    assert {r["metrics"]["val_loss"] for r in rows} == {1.5}
    ledger.close()


def test_status_shows_the_job_of_each_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path)
    sweep = load_sweep(path)
    ledger = Ledger(ledger_path(sweep))
    ledger.sync(sweep)
    executors.drive(sweep, ledger, _Fake(finished=True), io.StringIO(), poll_s=0)
    ledger.close()
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert all(f"job-{t.trial_id}" in out for t in sweep.trials)


def test_local_pool_packs_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,5,6")
    assert gpu_slices(2, 2) == ["3,4", "5,6"]
    assert gpu_slices(4, 1) == ["3", "4", "5", "6"]
    assert gpu_slices(3, 0) == ["", "", ""]
    with pytest.raises(ValueError, match="needs 6 GPUs; 4 visible"):
        gpu_slices(3, 2)
