"""Progress output for long work: a rich progress bar on a terminal, plain lines otherwise.

Also the sweep-level view of a ledger (trials finished of the total and an ETA) that `ablate
run` prints above each trial's bar and `ablate status` prints under its table.
"""

from __future__ import annotations

import sys
import time
from typing import Any

FINISHED = ("done", "diverged", "failed", "blocked")  # blocked: will not run (ablate.study.order)


def format_duration(seconds: float) -> str:
    """`4.2s`, `45s`, `3m05s`, `2h07m`."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def sweep_eta(
    rows: list[dict[str, Any]], workers: int = 1, now: float | None = None
) -> float | None:
    """Seconds until every unfinished trial is done; None before any trial has finished.

    Estimated from the mean `wall_s` of finished trials: a running trial has that minus the time
    since it was claimed left, a pending one all of it; the sum is shared by `workers`
    (default: the trials running now, at least 1).
    """
    walls = [r["metrics"].get("wall_s") for r in rows if r["state"] in FINISHED]
    walls = [w for w in walls if isinstance(w, (int, float))]
    if not walls:
        return None
    mean = sum(walls) / len(walls)
    now = time.time() if now is None else now
    left = 0.0
    for r in rows:
        if r["state"] == "running":
            left += max(mean - (now - r["updated"]), 0.0)
        elif r["state"] not in FINISHED:
            left += mean
    if workers is None:
        workers = sum(r["state"] == "running" for r in rows)
    return left / max(workers, 1)


def sweep_line(name: str, rows: list[dict[str, Any]], workers: int | None = None) -> str:
    """`sweep smoke: 2/4 trials finished (50%), ETA 1m10s`."""
    done = sum(r["state"] in FINISHED for r in rows)
    pct = 100 * done // len(rows) if rows else 100
    line = f"sweep {name}: {done}/{len(rows)} trials finished ({pct}%)"
    eta = sweep_eta(rows, workers)
    if done < len(rows):
        line += (
            f", ETA {format_duration(eta)}" if eta is not None else ", ETA after the first trial"
        )
    return line


class TrialProgress:
    """Callback for `trainer.train`: shows step, loss, tokens/s and evaluations."""

    def __init__(self, total_steps: int, label: str = "train", stream=None) -> None:
        self.total, self.label = total_steps, label
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self.task = self.bar.add_task(label, total=total_steps, info="")
            self.bar.start()

    def __call__(self, record: dict[str, Any]) -> None:
        if "status" in record:  # the final summary
            self.close()
            return
        if "val_loss" in record:
            text = f"{self.label} step {record['step']}: val_loss {record['val_loss']:.4f}"
            if self.bar:
                self.bar.console.print(text)
            else:
                print(text, file=self.stream, flush=True)
            return
        if "loss" not in record:  # a post-training row (ablate.posttrain.stage)
            return
        tps = record.get("tokens_per_s")
        info = f"loss {record['loss']:.4f}" + (f"  {tps:,.0f} tok/s" if tps else "")
        if self.bar:
            self.bar.update(self.task, completed=record["step"], info=info)
        else:
            print(
                f"{self.label} step {record['step']}/{self.total}  {info}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
            self.bar = None
