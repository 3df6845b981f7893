"""SLURM through submitit (`pip install 'ablate-lm[slurm]'`): one job array per round of
trials, resources per trial, requeue on preemption or timeout; `submitit_local` runs the same
jobs as local processes (submitit's LocalExecutor), which is what the tests exercise.

Job folders live in `runs/<sweep>/jobs/` (submitit's pickles and each job's stdout/stderr).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable

from ablate.study.executors import Executor, Handle, Resources
from ablate.study.executors.job import run_job


class TrialJob(Checkpointable):
    """`run_job` as a checkpointable callable: on preemption or timeout submitit requeues it
    (the default `checkpoint` resubmits the same call) and the trial resumes from its last
    checkpoint."""

    def __call__(self, job: dict[str, Any]) -> dict[str, Any]:
        return run_job(job)


class _SubmititHandle(Handle):
    def __init__(self, job, record: dict[str, Any]) -> None:
        self.job, self.record = job, record

    def done(self) -> bool:
        if isinstance(self.job, submitit.LocalJob) and self.job._process is None:
            # reattached local job (pid): done once its result exists or its process is gone
            return self.job.paths.result_pickle.exists() or not _pid_alive(self.job.job_id)
        return self.job.done()

    def outcome(self) -> dict[str, Any]:
        return self.job.result()


def _pid_alive(job_id: str) -> bool:
    try:
        os.kill(int(job_id), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class SubmititExecutor(Executor):
    def __init__(self, folder: Path, res: Resources, *, local: bool = False) -> None:
        self.name = "submitit_local" if local else "slurm"
        self.folder = folder
        self.max_live = max(1, (os.cpu_count() or 1) // res.cpus) if local else None
        self.ex = submitit.AutoExecutor(folder=folder, cluster="local" if local else "slurm")
        params: dict[str, Any] = {"timeout_min": res.timeout_min, "cpus_per_task": res.cpus}
        if res.gpus:
            params["gpus_per_node"] = res.gpus
        if res.partition and not local:
            params["slurm_partition"] = res.partition
        self.ex.update_parameters(name="ablate", **params)

    def submit(self, jobs: list[dict[str, Any]]) -> list[Handle]:
        subs = self.ex.map_array(TrialJob(), jobs)  # a SLURM job array
        return [self._handle(j, job["trial_id"]) for j, job in zip(subs, jobs)]

    def _handle(self, job, trial_id: str) -> Handle:
        record = {"executor": self.name, "job_id": str(job.job_id), "folder": str(self.folder)}
        return _SubmititHandle(job, record | {"trial_id": trial_id})

    def reattach(self, record: dict[str, Any]) -> Handle | None:
        folder = Path(record["folder"])
        if self.name == "slurm":
            job = submitit.SlurmJob(folder=folder, job_id=record["job_id"])
            if job.paths.result_pickle.exists():
                return _SubmititHandle(job, record)
            return None if job.state in ("UNKNOWN", "CANCELLED") else _SubmititHandle(job, record)
        job = submitit.LocalJob(folder=folder, job_id=record["job_id"])
        if job.paths.result_pickle.exists() or _pid_alive(record["job_id"]):
            return _SubmititHandle(job, record)
        return None
