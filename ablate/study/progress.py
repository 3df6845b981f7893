"""Progress output for long work: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Any


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
