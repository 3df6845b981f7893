"""Run a sweep's trials from its ledger: sequentially, or in N local worker processes.

Each trial runs `trainer.train(cfg, runs/<name>/trials/<id>/, resume=True)`. A trial that raises
is recorded as `failed` (retried up to the sweep's `max_attempts`) and never stops the others; a
trial left `running` by a killed process resumes from its last checkpoint on the next run.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from ablate.core import trainer
from ablate.core.config import load_config, to_yaml
from ablate.study.ledger import Ledger
from ablate.study.progress import TrialProgress
from ablate.study.sweep import Sweep, load_sweep
from ablate.study.tracking import SUMMARY_KEYS, TrackingHealth, WandbCallback

LEDGER = "ledger.sqlite"
STATE_ORDER = ("done", "diverged", "failed", "running", "pending")


class _Plain:
    """A stream wrapper that is never a terminal: plain progress lines from parallel workers."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def ledger_path(sweep: Sweep) -> Path:
    """`runs/<name>/ledger.sqlite`."""
    return sweep.run_dir / LEDGER


def counts(rows: list[dict]) -> dict[str, int]:
    """Number of ledger rows per state."""
    return {s: sum(r["state"] == s for r in rows) for s in STATE_ORDER}


def run_trial(
    sweep: Sweep, ledger: Ledger, row: dict, health: TrackingHealth, stream: TextIO
) -> str:
    """Train one claimed trial and record its end state; returns that state."""
    trial = next(t for t in sweep.trials if t.trial_id == row["trial_id"])
    trial_dir = Path(row["path"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "overrides.json").write_text(
        json.dumps(
            {
                "sweep": sweep.name,
                "arm": trial.arm,
                "seed": trial.seed,
                "overrides": trial.overrides,
                "command_line": list(sweep.cli_overrides),
            },
            indent=2,
            default=str,
        )
    )
    rows = ledger.rows()
    done = sum(r["state"] in ("done", "diverged", "failed") for r in rows)
    label = f"[{done}/{len(rows)}] {trial.arm} seed {trial.seed} ({trial.trial_id})"
    if row["attempts"] > 1:
        label += f" attempt {row['attempts']}"
    progress = TrialProgress(trial.cfg.train.steps, label=label, stream=stream)
    tracker = WandbCallback(
        trial.cfg,
        sweep_name=sweep.name,
        arm=trial.arm,
        trial_id=trial.trial_id,
        trial_dir=trial_dir,
        health=health,
    )
    try:
        summary = _finished_summary(trial_dir, trial.trial_id)  # killed before the ledger write
        if summary is None:
            summary = trainer.train(
                trial.cfg, trial_dir, resume=True, callbacks=[progress, tracker]
            )
    except Exception as e:  # any trial error is a result of that trial, not of the sweep
        progress.close()
        tracker.close()
        (trial_dir / "error.txt").write_text(traceback.format_exc())
        reason = f"{type(e).__name__}: {e}"
        ledger.finish(trial.trial_id, "failed", reason=reason)
        print(f"{label}: failed: {reason}", file=stream, flush=True)
        return "failed"
    progress.close()  # already closed by the summary record, unless training was skipped
    metrics = {k: summary.get(k) for k in SUMMARY_KEYS if k not in ("status", "reason")}
    metrics["metrics"] = summary.get("metrics", {})
    ledger.finish(
        trial.trial_id, summary["status"], reason=summary.get("reason", ""), metrics=metrics
    )
    if summary["status"] != "done":
        print(f"{label}: {summary['status']}: {summary.get('reason', '')}", file=stream, flush=True)
    return summary["status"]


def _finished_summary(trial_dir: Path, trial_id: str) -> dict | None:
    """The summary of a trial that finished but whose process died before the ledger write."""
    path = trial_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    ok = summary.get("config_hash") == trial_id and summary.get("status") in ("done", "diverged")
    return summary if ok else None


def _loop(sweep: Sweep, stream: TextIO) -> None:
    """Claim and run trials until none is runnable (one process's share of the work)."""
    ledger = Ledger(ledger_path(sweep))
    health = TrackingHealth()
    try:
        while (row := ledger.claim(sweep.max_attempts)) is not None:
            run_trial(sweep, ledger, row, health, stream)
    finally:
        ledger.close()


def _worker_main(sweep_path: str, cli_overrides: list[str], threads: int) -> None:
    """Entry point of a spawned worker process."""
    import torch

    torch.set_num_threads(threads)
    sweep = load_sweep(sweep_path, cli_overrides)
    _loop(sweep, _Plain(sys.stderr))


def run_sweep(
    sweep: Sweep, *, workers: int = 1, force: bool = False, stream: TextIO | None = None
) -> int:
    """Run every runnable trial of `sweep`; returns 1 if any trial ended `failed`, else 0.

    `workers` > 1 starts that many local processes, each with cpu_count // workers torch
    threads (trials that set `train.threads` keep their own). The config, and so the trial id,
    is unchanged by the split.
    """
    stream = stream or sys.stderr
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    ledger = Ledger(ledger_path(sweep))
    try:
        changed = ledger.sync(
            sweep, force=force, extra_meta={"base_config": to_yaml(load_config(sweep.base))}
        )
        if changed:
            print(
                f"--force: {len(changed)} finished trial(s) of the old spec are now inactive",
                file=stream,
            )
        todo = [r for r in ledger.rows() if r["state"] not in ("done", "diverged")]
        print(
            f"sweep {sweep.name}: {len(ledger.rows())} trials, {len(todo)} to run "
            f"({workers} worker{'s' if workers > 1 else ''})",
            file=stream,
            flush=True,
        )
        if workers == 1:
            _loop(sweep, stream)
        else:
            _run_workers(sweep, min(workers, max(1, len(todo))))
            for trial_id in ledger.reap():
                print(f"trial {trial_id}: worker died; marked failed", file=stream)
        rows = ledger.rows()
    finally:
        ledger.close()
    c = counts(rows)
    print(
        f"sweep {sweep.name}: " + ", ".join(f"{n} {s}" for s, n in c.items() if n),
        file=stream,
        flush=True,
    )
    return 1 if c["failed"] else 0


def _run_workers(sweep: Sweep, workers: int) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch threads
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [
        ctx.Process(target=_worker_main, args=(str(sweep.path), list(sweep.cli_overrides), threads))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def trial_table(sweep: Sweep) -> list[dict[str, Any]]:
    """The trials with their ledger state (`new` if the ledger has no row); writes nothing."""
    states: dict[str, dict] = {}
    if ledger_path(sweep).exists():
        ledger = Ledger(ledger_path(sweep), readonly=True)
        states = {r["trial_id"]: r for r in ledger.rows(active_only=False)}
        ledger.close()
    out = []
    for t in sweep.trials:
        row = states.get(t.trial_id, {})
        out.append(
            {
                "arm": t.arm,
                "seed": t.seed,
                "trial_id": t.trial_id,
                "state": row.get("state", "new"),
                "attempts": row.get("attempts", 0),
                "overrides": t.overrides,
            }
        )
    return out


def changed_finished(sweep: Sweep) -> list[dict[str, Any]]:
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
