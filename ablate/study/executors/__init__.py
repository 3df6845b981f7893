"""Executors of a sweep's trials: `local` (the worker pool of `ablate.study.launch`), `slurm`
and `submitit_local` (submitit; `submitit_local` runs the same jobs as local processes), `ray`.

The driver keeps the ledger: it claims trials, submits one job per trial through the engine,
stores each job's id in the ledger's meta table (key `jobs`) and records each outcome the job
returns (`ablate.study.executors.job`). A rerun of `ablate run` reattaches to jobs still alive
(`ablate status` shows their ids) and resubmits lost ones, which resume from their checkpoints.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, TextIO

from ablate.study import wandb_ids
from ablate.study.executors.job import payload
from ablate.study.tracking import SUMMARY_KEYS

JOBS = "jobs"  # ledger meta key: {trial_id: job record}
NAMES = ("local", "slurm", "submitit_local", "ray")
POLL_S = 1.0


@dataclass(frozen=True)
class Resources:
    """What one trial gets: CPUs (also its torch threads' ceiling), GPUs, wall-clock minutes."""

    cpus: int = 1
    gpus: int = 0
    timeout_min: int = 24 * 60
    partition: str = ""  # SLURM partition ("" = the cluster's default)
    address: str = ""  # Ray cluster address ("" = start a local Ray for the run)


class Handle(ABC):
    """One submitted job."""

    record: dict[str, Any]  # stored in the ledger: {"executor", "job_id", ...}

    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def outcome(self) -> dict[str, Any]:
        """The job's return value; raises when the job died, was killed or cancelled."""


class Executor(ABC):
    name: str
    max_live: int | None = None  # jobs in flight at once (None: the engine queues them)

    @abstractmethod
    def submit(self, jobs: list[dict[str, Any]]) -> list[Handle]:
        """Submit one job per payload (an array where the engine has them)."""

    @abstractmethod
    def reattach(self, record: dict[str, Any]) -> Handle | None:
        """The handle of a job submitted by an earlier driver, or None if it is gone."""

    def close(self) -> None:
        """Release what the executor started (a local Ray, say)."""


def make(name: str, sweep, res: Resources) -> Executor:
    """The executor called `name` (its engine imported only here: install extras)."""
    if name in ("slurm", "submitit_local"):
        from ablate.study.executors.slurm import SubmititExecutor

        return SubmititExecutor(sweep.run_dir / "jobs", res, local=name == "submitit_local")
    if name == "ray":
        from ablate.study.executors.ray_cluster import RayExecutor

        return RayExecutor(res)
    raise ValueError(f"--executor {name!r}: one of {', '.join(NAMES)}")


def drive(sweep, ledger, executor: Executor, stream: TextIO, poll_s: float = POLL_S) -> None:
    """Submit every runnable trial, record outcomes as jobs end, resubmit retryable failures."""
    ids = [t.trial_id for t in sweep.trials]
    jobs: dict[str, dict] = dict(ledger.meta().get(JOBS, {}))
    live = _reattach(sweep, ledger, executor, jobs, stream)
    token = wandb_ids.sweep_token(ledger)  # W&B run ids of the jobs: made here, on the driver
    while True:
        claimed, room = [], executor.max_live
        while room is None or len(live) + len(claimed) < room:
            row = ledger.claim(sweep.max_attempts, trial_ids=[i for i in ids if i not in live])
            if row is None:
                break
            claimed.append(row)
        if claimed:
            handles = executor.submit([payload(sweep, row, token) for row in claimed])
            for row, h in zip(claimed, handles):
                live[row["trial_id"]] = h
                jobs[row["trial_id"]] = h.record
                print(f"trial {row['trial_id']}: job {h.record['job_id']}", file=stream)
            ledger.set_meta(JOBS, jobs)
        if not live:
            return
        for trial_id, h in list(live.items()):
            if h.done():
                _record(ledger, trial_id, h, stream)
                del live[trial_id]
        time.sleep(poll_s if live else 0)


def _reattach(sweep, ledger, executor: Executor, jobs: dict, stream: TextIO) -> dict[str, Handle]:
    """Handles of `running` trials whose jobs (of this executor) are still known to it."""
    live = {}
    for row in ledger.rows():
        rec = jobs.get(row["trial_id"])
        if row["state"] != "running" or not rec or rec.get("executor") != executor.name:
            continue
        h = executor.reattach(rec)
        if h is None:
            continue  # gone: claimed again below and resumed from its checkpoint
        ledger.release(row["trial_id"])  # taken over by this driver, no attempt used
        ledger.claim(sweep.max_attempts, trial_ids=[row["trial_id"]])
        live[row["trial_id"]] = h
        print(f"trial {row['trial_id']}: reattached to job {rec['job_id']}", file=stream)
    return live


def _record(ledger, trial_id: str, h: Handle, stream: TextIO) -> None:
    """The ledger entry of a finished job (a job that died is a failure that is retried)."""
    try:
        out = h.outcome()
    except Exception as e:  # killed, preempted without requeue, cancelled, node lost
        out = {"status": "failed", "reason": f"job {h.record['job_id']}: {e}", "retry": True}
    summary = out.get("summary", {})
    metrics = {k: summary.get(k) for k in SUMMARY_KEYS if k not in ("status", "reason")}
    metrics["metrics"] = summary.get("metrics", {})
    ledger.finish(
        trial_id,
        out["status"],
        reason=out.get("reason", ""),
        metrics=metrics if summary else None,
        retry=out.get("retry", True),
    )
    if out["status"] != "done":
        print(f"trial {trial_id}: {out['status']}: {out.get('reason', '')}", file=stream)
