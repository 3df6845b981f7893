"""Run a sweep's trials from its ledger: sequentially, or in N local worker processes.

Each trial runs `trainer.train(cfg, runs/<name>/trials/<id>/, resume=True)`. A trial that raises
is recorded as `failed` (retried up to the sweep's `max_attempts`; a configuration or data error
before the first logged step is deterministic and not retried) and never stops the others; a
trial left `running` by a killed process resumes from its last checkpoint on the next run.
A filesystem fault (`fsio.StorageError`) or Ctrl-C stops the sweep instead: the trial is given
back to the ledger and the next run resumes it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from ablate.core import trainer
from ablate.core.config import load_config, to_yaml
from ablate.core.fsio import StorageError, atomic_write_text, describe, is_storage_fault
from ablate.study import executors, wandb_ids
from ablate.study import workers as workers_mod
from ablate.study.executors import Resources
from ablate.study.ledger import Ledger
from ablate.study.progress import TrialProgress, sweep_line
from ablate.study.sweep import Sweep
from ablate.study.tracking import SUMMARY_KEYS, TrackingHealth, WandbCallback
from ablate.study.trial_table import LEDGER, counts, ledger_path  # noqa: F401 (re-exported)

WAIT_POLL_S = 0.5  # how often a worker with nothing runnable looks for a finished parent


class _Started:
    """Callback noting whether this attempt logged a step (errors before it are deterministic)."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, record: dict[str, Any]) -> None:
        self.seen = True


def run_trial(
    sweep: Sweep, ledger: Ledger, row: dict, health: TrackingHealth, stream: TextIO
) -> str:
    """Train one claimed trial and record its end state; returns that state.

    Raises:
        StorageError: a filesystem fault; the trial is given back (resumes on the next run).
        KeyboardInterrupt: Ctrl-C; the trial is given back at its last checkpoint.
    """
    trial = {t.trial_id: t for t in sweep.trials}[row["trial_id"]]  # claim() is limited to these
    trial_dir = Path(row["path"])
    rows = ledger.rows()
    done = sum(r["state"] in ("done", "diverged", "failed", "blocked") for r in rows)
    label = f"[{done}/{len(rows)}] {trial.arm} seed {trial.seed} ({trial.trial_id})"
    if row["attempts"] > 1:
        label += f" attempt {row['attempts']}"
    print(sweep_line(sweep.name, rows), file=stream, flush=True)  # above the trial's bar
    started = _Started()
    progress = TrialProgress(trial.cfg.train.steps, label=label, stream=stream)
    tracker = WandbCallback(
        trial.cfg,
        sweep_name=sweep.name,
        arm=trial.arm,
        trial_id=trial.trial_id,
        run_id=wandb_ids.run_id(trial.trial_id, wandb_ids.sweep_token(ledger)),
        trial_dir=trial_dir,
        health=health,
    )
    try:
        _write_overrides(sweep, trial, trial_dir)
        summary = _finished_summary(trial_dir, trial.trial_id)  # killed before the ledger write
        if summary is None:
            summary = trainer.train(
                trial.cfg, trial_dir, resume=True, callbacks=[started, progress, tracker]
            )
    except BaseException as e:  # any trial error is a result of that trial, not of the sweep
        progress.close()
        tracker.close()
        if isinstance(e, (KeyboardInterrupt, StorageError)) or is_storage_fault(e):
            with contextlib.suppress(StorageError):  # a read-only ledger: resumed as `running`
                ledger.release(trial.trial_id)
            if isinstance(e, OSError) and not isinstance(e, StorageError):
                raise StorageError(e.errno, e.strerror, e.filename) from e
            raise
        if not isinstance(e, Exception):
            raise
        return _record_failure(ledger, trial, trial_dir, e, started.seen, label, stream)
    progress.close()  # already closed by the summary record, unless training was skipped
    metrics = {k: summary.get(k) for k in SUMMARY_KEYS if k not in ("status", "reason")}
    metrics["metrics"] = summary.get("metrics", {})
    ledger.finish(
        trial.trial_id, summary["status"], reason=summary.get("reason", ""), metrics=metrics
    )
    if summary["status"] != "done":
        print(f"{label}: {summary['status']}: {summary.get('reason', '')}", file=stream, flush=True)
    return summary["status"]


def _write_overrides(sweep: Sweep, trial, trial_dir: Path) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "sweep": sweep.name,
        "arm": trial.arm,
        "seed": trial.seed,
        "overrides": trial.overrides,
        "command_line": list(sweep.cli_overrides),
    }
    atomic_write_text(trial_dir / "overrides.json", json.dumps(info, indent=2, default=str))


def _record_failure(
    ledger: Ledger, trial, trial_dir: Path, e: Exception, stepped: bool, label: str, stream
) -> str:
    """Write error.txt (best effort) and mark the trial failed; a `ValueError` before the first
    logged step is a configuration or data error, which would fail every attempt alike."""
    deterministic = isinstance(e, ValueError) and not stepped
    try:
        atomic_write_text(trial_dir / "error.txt", traceback.format_exc())
    except OSError as write_error:  # the failure itself is still recorded in the ledger
        print(f"{label}: could not write error.txt: {describe(write_error)}", file=stream)
    reason = f"{type(e).__name__}: {e}"
    ledger.finish(trial.trial_id, "failed", reason=reason, retry=not deterministic)
    note = " (configuration or data error: not retried)" if deterministic else ""
    print(f"{label}: failed{note}: {reason}", file=stream, flush=True)
    return "failed"


def _finished_summary(trial_dir: Path, trial_id: str) -> dict | None:
    """The summary of a trial that finished but whose process died before the ledger write."""
    path = trial_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    ok = summary.get("config_hash") == trial_id and summary.get("status") in ("done", "diverged")
    return summary if ok else None


def loop(sweep: Sweep, stream: TextIO, stop=None) -> None:
    """Claim and run trials until none is runnable or `stop` (an Event) is set; while trials
    wait for others that another worker runs, poll every `WAIT_POLL_S`."""
    ledger = Ledger(ledger_path(sweep))
    health = TrackingHealth()
    ids = [t.trial_id for t in sweep.trials]
    try:
        while not (stop is not None and stop.is_set()):
            row = ledger.claim(sweep.max_attempts, trial_ids=ids)
            if row is None:
                if not ledger.waiting(sweep.max_attempts, ids):
                    break
                stop.wait(WAIT_POLL_S) if stop is not None else time.sleep(WAIT_POLL_S)
                continue
            run_trial(sweep, ledger, row, health, stream)
    finally:
        ledger.close()


def run_sweep(
    sweep: Sweep,
    *,
    workers: int = 1,
    force: bool = False,
    stream: TextIO | None = None,
    executor: str = "local",
    resources: Resources | None = None,
) -> int:
    """Run every runnable trial of `sweep`; returns 1 if any trial ended `failed`, else 0.

    `workers` > 1 starts that many local processes (cpu_count // workers torch threads unless
    a trial sets `train.threads`; with `resources.gpus`, own GPUs via CUDA_VISIBLE_DEVICES);
    0 = `workers.auto_workers`; 1 = in this process. Trial ids do not depend on the split.
    Another `executor` (`ablate.study.executors`) submits the trials as jobs instead.
    """
    stream = stream or sys.stderr
    if workers < 0:
        raise ValueError(f"--workers must be >= 0 (0 = as many as the cores hold), got {workers}")
    ledger = Ledger(ledger_path(sweep))
    try:
        res = resources or Resources()
        return _run_held(sweep, ledger, workers, force, stream, executor, res)
    finally:
        with contextlib.suppress(StorageError):
            ledger.release_hold()
        ledger.close()


def _run_held(
    sweep: Sweep,
    ledger: Ledger,
    workers: int,
    force: bool,
    stream: TextIO,
    executor: str,
    resources: Resources,
) -> int:
    """`run_sweep` once the ledger is open (this process holds the sweep after `sync`)."""
    changed = ledger.sync(
        sweep, force=force, extra_meta={"base_config": to_yaml(load_config(sweep.base))}
    )
    wandb_ids.sweep_token(ledger)  # made (or renewed for a copy) before any worker starts
    if changed:
        print(
            f"--force: {len(changed)} finished trial(s) of the old spec are now inactive",
            file=stream,
        )
    todo = [r for r in ledger.rows() if r["state"] not in ("done", "diverged", "blocked")]
    workers = workers or workers_mod.auto_workers(sweep, len(todo))
    where = f"{workers} worker{'s' if workers > 1 else ''}" if executor == "local" else executor
    print(
        f"sweep {sweep.name}: {len(ledger.rows())} trials, {len(todo)} to run ({where})",
        file=stream,
        flush=True,
    )
    if executor != "local":
        ex = executors.make(executor, sweep, resources)
        try:
            executors.drive(sweep, ledger, ex, stream)
        finally:
            ex.close()
    elif workers == 1 and not resources.gpus:
        loop(sweep, stream)
    else:
        _run_workers(sweep, ledger, min(workers, max(1, len(todo))), stream, resources.gpus)
    rows = ledger.rows()
    c = counts(rows)
    print(
        f"sweep {sweep.name}: " + ", ".join(f"{n} {s}" for s, n in c.items() if n),
        file=stream,
        flush=True,
    )
    if c["pending"]:  # runnable, yet no worker took them: never a silent success
        print(f"sweep {sweep.name}: {c['pending']} runnable trial(s) were not run", file=stream)
        return 1
    return 1 if c["failed"] else 0


def _run_workers(sweep: Sweep, ledger: Ledger, workers: int, stream: TextIO, gpus: int) -> None:
    """Run `workers` processes; afterwards give back or reap the trials of dead workers."""
    try:
        workers_mod.run(sweep, workers, gpus_per_worker=gpus)
    except BaseException:  # Ctrl-C or a worker's filesystem fault: resumable, not failed
        with contextlib.suppress(StorageError):
            ledger.release_dead()
        raise
    for trial_id in ledger.reap():
        print(f"trial {trial_id}: worker died; marked failed", file=stream)
