"""W&B tracking as a trainer callback: one run per trial, offline by default.

Tracking is best effort: if `wandb` cannot start (within `tracking.init_timeout` seconds) or
log, it warns once per process and stops tracking; training and the ledger (the source of
truth) carry on untouched. An offline run lives in one directory per trial: a resumed trial
replaces the directory of its earlier attempt by one holding the whole metrics.jsonl replayed,
so `wandb sync` sees each trial once, every step once.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

from ablate.core import memory

SUMMARY_KEYS = (
    "status",
    "reason",
    "steps",
    "seed",
    "config_hash",
    "train_loss",
    "val_loss",
    "val_ppl",
    "tokens_per_s",
    "num_params",
    "num_params_non_embedding",
    *memory.KEYS,  # the one the trial recorded: how its peak memory was measured
    # compute figures (ablate.core.throughput); mfu None where the device's peak is not known
    "activated_params",
    "train_flops_per_token",
    "achieved_flops_per_s",
    "mfu",
    "wall_s",
    "git_rev",
    "git_dirty",
)


class TrackingHealth:
    """Shared by the callbacks of one process: remembers the first W&B failure."""

    def __init__(self) -> None:
        self.error: str | None = None

    def fail(self, what: str, exc: BaseException) -> None:
        if self.error is None:
            self.error = f"{what}: {type(exc).__name__}: {exc}"
            warnings.warn(
                f"W&B tracking disabled ({self.error}); training continues and "
                "results stay in the ledger and metrics.jsonl",
                stacklevel=2,
            )


def _numeric(record: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.items()
        if k != "step"
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    }


def run_tags(cfg: dict[str, Any], arm: str, seed: int) -> list[str]:
    """W&B tags of a trial: its arm, each component choice (`attention=mla`) and its seed."""
    tags = [f"arm={arm}"]

    def walk(d: dict[str, Any]) -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                if isinstance(value.get("name"), str):
                    tags.append(f"{key}={value['name']}")
                walk(value)

    walk(cfg)
    return [t[:64] for t in dict.fromkeys([*tags, f"seed={seed}"])]  # W&B's tag limit


def _cell(text: str) -> float | str | None:
    if text == "":  # a metric only some arms record (e.g. a loss scale): missing, not a string
        return None
    try:
        return float(text)
    except ValueError:
        return text


def log_report(sweep, html_path: Path, csv_path: Path) -> str | None:
    """Log a sweep's results table (a W&B Table) and its HTML report (an artifact) in one run
    of the sweep's group (job type `report`); best effort: returns the error, never raises."""
    import csv

    t = sweep.trials[0].cfg.tracking
    if t.wandb == "disabled":
        return None
    try:
        import wandb

        with csv_path.open(newline="") as f:
            rows = list(csv.reader(f))
        run = wandb.init(
            project=t.project,
            entity=t.entity or None,
            group=sweep.name,
            job_type="report",
            name=f"{sweep.name}-report",
            dir=str(Path(sweep.run_dir).resolve()),  # absolute: see WandbCallback
            mode=t.wandb,
            tags=["report"],
            settings=wandb.Settings(
                silent=True,
                console="off",
                x_disable_stats=True,
                disable_git=True,
                init_timeout=t.init_timeout,
            ),
        )
        data = [[_cell(v) for v in row] for row in rows[1:]]
        run.log({"results": wandb.Table(columns=rows[0], data=data)})
        artifact = wandb.Artifact(f"{sweep.name}-report", type="report")
        artifact.add_file(str(html_path), name="index.html")
        run.log_artifact(artifact)
        run.finish()
        return None
    except Exception as e:  # tracking must never fail a finished sweep
        warnings.warn(f"W&B report logging failed: {type(e).__name__}: {e}", stacklevel=2)
        return f"{type(e).__name__}: {e}"


class WandbCallback:
    """Trainer callback logging one trial to its own W&B run.

    Args:
        cfg: the trial's resolved `Config` (its `tracking` section picks mode/project/entity).
        sweep_name: the W&B group.
        arm: the W&B job type.
        trial_id: the trial id (in the run's name).
        run_id: the W&B run id, unique per sweep directory and stable across resumes
            (`ablate.study.wandb_ids`).
        trial_dir: W&B writes its run directory under `<trial_dir>/wandb/`.
        health: shared failure state (warn once per process).
    """

    def __init__(
        self,
        cfg,
        *,
        sweep_name: str,
        arm: str,
        trial_id: str,
        run_id: str,
        trial_dir: str | Path,
        health: TrackingHealth,
    ) -> None:
        self.cfg, self.sweep_name, self.arm, self.trial_id = cfg, sweep_name, arm, trial_id
        self.run_id = run_id
        # absolute: the W&B service process keeps the working directory it started in
        self.trial_dir, self.health = Path(trial_dir).resolve(), health
        self.run = None

    @property
    def enabled(self) -> bool:
        return self.cfg.tracking.wandb != "disabled" and self.health.error is None

    def _start(self) -> None:
        import wandb

        from ablate.core.config import to_dict

        t = self.cfg.tracking
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        if t.wandb == "offline":  # an earlier attempt's run: replaced by the full replay below
            for old in (self.trial_dir / "wandb").glob(f"offline-run-*-{self.run_id}"):
                shutil.rmtree(old, ignore_errors=True)
        self.run = wandb.init(
            project=t.project,
            entity=t.entity or None,
            group=self.sweep_name,
            job_type=self.arm,
            name=f"{self.arm}-s{self.cfg.train.seed}-{self.trial_id}",
            id=self.run_id,
            resume="allow",
            dir=str(self.trial_dir),
            mode=t.wandb,
            config=to_dict(self.cfg),
            tags=run_tags(to_dict(self.cfg), self.arm, self.cfg.train.seed),
            settings=wandb.Settings(
                silent=True,
                console="off",
                x_disable_stats=True,
                disable_git=True,
                save_code=False,
                init_timeout=t.init_timeout,
            ),
        )
        if t.wandb == "offline":
            self._replay()

    def _replay(self) -> None:
        """Log every record metrics.jsonl holds (the trainer writes each before its callbacks)."""
        path = self.trial_dir / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        for record in map(json.loads, filter(str.strip, lines)):
            self.run.log(_numeric(record), step=int(record["step"]))

    def __call__(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        final = "status" in record
        try:
            replayed = self.run is None and self.cfg.tracking.wandb == "offline"
            if self.run is None:
                self._start()
            if final:
                summary = {k: record[k] for k in SUMMARY_KEYS if record.get(k) is not None}
                summary.update(_numeric(record.get("metrics", {})))
                self.run.summary.update(summary)
                self.run.finish(exit_code=0)
                self.run = None
            elif not replayed:  # a replay already logged this record
                self.run.log(_numeric(record), step=int(record["step"]))
        except Exception as e:  # any wandb failure must not stop training
            self.health.fail("start" if self.run is None else "log", e)
            self.close()

    def close(self) -> None:
        """Finish a run left open (training raised or tracking failed); never raises."""
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception as e:  # best effort; the warning above already fired
                self.health.fail("finish", e)
