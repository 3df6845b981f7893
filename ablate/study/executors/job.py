"""The worker side of a cluster executor: train one trial in its directory, report the outcome.

A job touches only its trial directory (checkpoint, metrics, summary, W&B run); the ledger
stays with the driver, which records the outcome this function returns. A job that is killed
or preempted leaves its checkpoint behind, and the next submission resumes from it.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Any


def payload(sweep, row: dict, token: str) -> dict[str, Any]:
    """What a job needs (plain data, so any engine can ship it): config, trial dir, labels and
    the W&B run id made from the sweep directory's `token` (`ablate.study.wandb_ids`)."""
    from ablate.core.config import to_dict
    from ablate.study.wandb_ids import run_id

    trial = {t.trial_id: t for t in sweep.trials}[row["trial_id"]]
    return {
        "config": to_dict(trial.cfg),
        "trial_id": trial.trial_id,
        "run_id": run_id(trial.trial_id, token),
        "trial_dir": str(Path(row["path"]).resolve()),
        "sweep": sweep.name,
        "arm": trial.arm,
    }


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) the trial; {"status", "reason", "retry", "summary"}; never raises for a
    trial's own error (a `ValueError` before the first logged step is not retried)."""
    from ablate.core import trainer
    from ablate.core.config import config_hash, from_dict
    from ablate.core.fsio import atomic_write_text
    from ablate.study.launch import _finished_summary, _Started
    from ablate.study.tracking import TrackingHealth, WandbCallback

    trial_dir = Path(job["trial_dir"])
    started = _Started()
    try:
        cfg = from_dict(job["config"], f"job {job['trial_id']}")
        if config_hash(cfg) != job["trial_id"]:  # another code or data revision on this node
            raise ValueError(
                f"trial {job['trial_id']} resolves to {config_hash(cfg)} on this node: the "
                "worker runs another revision of the code or data than the driver"
            )
        summary = _finished_summary(trial_dir, job["trial_id"])
        if summary is None:
            tracker = WandbCallback(
                cfg,
                sweep_name=job["sweep"],
                arm=job["arm"],
                trial_id=job["trial_id"],
                run_id=job["run_id"],
                trial_dir=trial_dir,
                health=TrackingHealth(),
            )
            try:
                summary = trainer.train(cfg, trial_dir, resume=True, callbacks=[started, tracker])
            finally:
                tracker.close()
    except Exception as e:
        with contextlib.suppress(OSError):  # the outcome still reaches the driver
            atomic_write_text(trial_dir / "error.txt", traceback.format_exc())
        retry = not (isinstance(e, ValueError) and not started.seen)
        return {"status": "failed", "reason": f"{type(e).__name__}: {e}", "retry": retry}
    return {"status": summary["status"], "reason": summary.get("reason", ""), "summary": summary}
