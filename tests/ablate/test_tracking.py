"""W&B tracking: a real offline run per trial, failures that never stop training, lazy imports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings

import pytest
import torch
import wandb

from ablate.core.config import ConfigError, load_config
from ablate.study import launch, wandb_ids
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from ablate.study.tracking import TrackingHealth, WandbCallback
from tests.ablate.sweep_helpers import TINY, write_sweep

INIT_BOUND_S = 30  # init_timeout=1 plus wandb's service start on a loaded machine


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_one_offline_wandb_run_per_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, name="trk", tracking="offline", steps=5, seeds=(0,)))
    assert launch.run_sweep(sweep) == 0
    wandb.teardown()  # flushes every run's file, as at exit (finish() does not wait for it)
    ledger = Ledger(sweep.run_dir / "ledger.sqlite", readonly=True)
    rows, token = ledger.rows(), wandb_ids.sweep_token(ledger)
    assert len(rows) == 2
    for r in rows:
        rid = wandb_ids.run_id(r["trial_id"], token)
        runs = list((tmp_path / r["path"] / "wandb").glob(f"offline-run-*-{rid}"))
        assert len(runs) == 1, r["trial_id"]
        data = (runs[0] / f"run-{rid}.wandb").read_bytes()
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
        run_id=f"{trial.trial_id}-t",
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


def test_resumed_trial_continues_its_one_offline_run(tmp_path, monkeypatch):
    from ablate.core.trainer import train

    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, tracking="offline", steps=10, seeds=(0,)))
    trial = sweep.trials[0]
    out = tmp_path / "trial"

    def callback() -> WandbCallback:
        return WandbCallback(
            trial.cfg,
            sweep_name="t",
            arm=trial.arm,
            trial_id=trial.trial_id,
            run_id=f"{trial.trial_id}-t",
            trial_dir=out,
            health=TrackingHealth(),
        )

    first = callback()
    assert train(trial.cfg, out, callbacks=[first], stop_after=5)["status"] == "stopped"
    first.close()  # as after a Ctrl-C, which also ends the process and its W&B service:
    wandb.teardown()  # finish() only asks the service to close the run's stream, unanswered
    second = callback()
    assert train(trial.cfg, out, callbacks=[second])["resumed_from"] == 5
    second.close()
    wandb.teardown()  # the run's file is complete once the service has exited (as at exit)
    [run] = (out / "wandb").glob(f"offline-run-*-{trial.trial_id}-t")
    data = (run / f"run-{trial.trial_id}-t.wandb").read_bytes()
    assert b"grad_norm" in data and b"val_ppl" in data  # the replayed and the new steps


def test_unresponsive_wandb_server_costs_init_timeout_and_one_warning(tmp_path, monkeypatch):
    server = socket.socket()  # accepts connections, never answers
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "online")
    cfg = load_config(TINY, ["tracking.wandb=online", "tracking.init_timeout=1"])
    health = TrackingHealth()
    cb = WandbCallback(
        cfg,
        sweep_name="t",
        arm="a",
        trial_id="abc",
        run_id="abc-t",
        trial_dir=tmp_path,
        health=health,
    )
    t0 = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2, 3):
            cb({"step": step, "loss": 1.0})
    server.close()
    assert time.monotonic() - t0 < INIT_BOUND_S  # wandb's own default waits about 90 s
    assert [str(w.message) for w in caught if "W&B" in str(w.message)] == [
        f"W&B tracking disabled ({health.error}); training continues and results stay in "
        "the ledger and metrics.jsonl"
    ]


@pytest.mark.parametrize("project", ["a/b", "x" * 129, "", "team:run", "tab\there"])
def test_invalid_project_name_is_a_config_error(project):
    with pytest.raises(ConfigError, match="tracking.project"):
        load_config(TINY, [f"tracking.project={project!r}"])
    with pytest.raises(ConfigError, match="tracking.init_timeout"):
        load_config(TINY, ["tracking.init_timeout=0"])
