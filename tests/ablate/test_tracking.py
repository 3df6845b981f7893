"""W&B tracking: a real offline run per trial, failures that never stop training, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
import wandb

from ablate.study import launch
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from ablate.study.tracking import TrackingHealth, WandbCallback
from tests.ablate.sweep_helpers import write_sweep


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_one_offline_wandb_run_per_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, name="trk", tracking="offline", steps=5, seeds=(0,)))
    assert launch.run_sweep(sweep) == 0
    rows = Ledger(sweep.run_dir / "ledger.sqlite", readonly=True).rows()
    assert len(rows) == 2
    for r in rows:
        runs = list((tmp_path / r["path"] / "wandb").glob(f"offline-run-*-{r['trial_id']}"))
        assert len(runs) == 1, r["trial_id"]
        data = (runs[0] / f"run-{r['trial_id']}.wandb").read_bytes()
        for text in ("trk", r["arm"], "val_ppl", "grad_norm", "max_seq_len"):
            assert text.encode() in data, text  # group, job type, step metrics, config


def _train_one(tmp_path, health: TrackingHealth):
    from ablate.core.trainer import train

    tmp_path.mkdir(exist_ok=True)
    sweep = load_sweep(
        write_sweep(tmp_path, arms={"a": {}}, seeds=(0,), steps=5, tracking="offline")
    )
    trial = sweep.trials[0]
    cb = WandbCallback(
        trial.cfg,
        sweep_name="s",
        arm="a",
        trial_id=trial.trial_id,
        trial_dir=tmp_path / "trial",
        health=health,
    )
    return train(trial.cfg, tmp_path / "trial", callbacks=[cb])


def test_wandb_start_failure_warns_once_and_training_completes(tmp_path, monkeypatch):
    calls = []

    def broken_init(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("no wandb today")

    monkeypatch.setattr(wandb, "init", broken_init)
    health = TrackingHealth()
    with pytest.warns(UserWarning, match="W&B tracking disabled.*no wandb today"):
        summary = _train_one(tmp_path, health)
    assert summary["status"] == "done" and summary["val_loss"] > 0
    assert (tmp_path / "trial" / "summary.json").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second trial in the same process: no new warning
        assert _train_one(tmp_path / "again", health)["status"] == "done"
    assert len(calls) == 1


class _FlakyRun:
    def __init__(self) -> None:
        self.logged, self.finished = 0, []
        self.summary: dict = {}

    def log(self, data, step):
        self.logged += 1
        if self.logged == 2:
            raise OSError("disk full")

    def finish(self, exit_code=0):
        self.finished.append(exit_code)


def test_wandb_log_failure_does_not_stop_training(tmp_path, monkeypatch):
    run = _FlakyRun()
    monkeypatch.setattr(wandb, "init", lambda **kwargs: run)
    with pytest.warns(UserWarning, match="log: OSError: disk full"):
        summary = _train_one(tmp_path, TrackingHealth())
    assert summary["status"] == "done"
    assert run.logged == 2 and run.finished == [1]  # closed once, nothing logged after


def test_import_ablate_stays_light():
    code = (
        "import sys, ablate, ablate.cli, ablate.study.sweep, ablate.study.ledger, "
        "ablate.study.tracking, "
        "ablate.report.stats, ablate.report.html; ablate.cli.build_parser(); "
        "print(sorted(m for m in ('wandb', 'optuna', 'matplotlib', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
