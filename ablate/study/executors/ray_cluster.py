"""Ray (`pip install 'ablate-lm[ray]'`): one remote task per trial with its CPUs and GPUs, on
the cluster at `--ray-address` or on a Ray started for the run (stopped at the end).

Ray's task results live only as long as the driver, so a rerun never reattaches: it
resubmits the trials left `running`, which resume from their checkpoints.
"""

from __future__ import annotations

from typing import Any

import ray

from ablate.study.executors import Executor, Handle, Resources
from ablate.study.executors.job import run_job


class _RayHandle(Handle):
    def __init__(self, ref, record: dict[str, Any]) -> None:
        self.ref, self.record = ref, record

    def done(self) -> bool:
        ready, _ = ray.wait([self.ref], timeout=0)
        return bool(ready)

    def outcome(self) -> dict[str, Any]:
        return ray.get(self.ref)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, res: Resources) -> None:
        self.started = not ray.is_initialized()
        if self.started:
            kw = {"address": res.address} if res.address else {"include_dashboard": False}
            ray.init(log_to_driver=False, **kw)
        self.task = ray.remote(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=0)(run_job)

    def submit(self, jobs: list[dict[str, Any]]) -> list[Handle]:
        refs = [self.task.remote(job) for job in jobs]
        return [
            _RayHandle(ref, {"executor": self.name, "job_id": ref.hex(), "trial_id": j["trial_id"]})
            for ref, j in zip(refs, jobs)
        ]

    def reattach(self, record: dict[str, Any]) -> Handle | None:
        return None  # results die with the driver that submitted them

    def close(self) -> None:
        if self.started:
            ray.shutdown()
