"""Sweep execution: full run + report, idempotent rerun, failures and divergence, SIGKILL and
resume through a real subprocess, parallel workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ablate import cli
from ablate.study import launch
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep
from tests.conftest import REPO

KILL_POLL_S = 0.02
KILL_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Trials set `train.threads=1` in this process; restore the count for other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _rows(path: Path) -> list[dict]:
    return Ledger(path / "runs" / "t" / "ledger.sqlite", readonly=True).rows()


def test_run_report_status_and_idempotent_rerun(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = write_sweep(tmp_path)
    assert cli.main(["run", str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert "report: reports/t/index.html" in out
    assert "[0/4] a seed 0" in err and "loss" in err and "tok/s" in err
    rows = _rows(tmp_path)
    assert [r["state"] for r in rows] == ["done"] * 4
    for r in rows:
        trial = Path(r["path"])
        assert trial.parent == Path("runs/t/trials") and trial.name == r["trial_id"]
        assert json.loads((trial / "summary.json").read_text())["config_hash"] == r["trial_id"]
        assert r["metrics"]["val_loss"] > 0
    assert (tmp_path / "reports/t/results.csv").exists()
    stamps = {r["trial_id"]: (Path(r["path"]) / "summary.json").stat().st_mtime_ns for r in rows}
    monkeypatch.setattr(launch.trainer, "train", lambda *a, **k: pytest.fail("retrained"))
    assert cli.main(["run", str(sweep)]) == 0  # idempotent: nothing left to run
    assert [(r["state"], r["attempts"]) for r in _rows(tmp_path)] == [("done", 1)] * 4
    for r in rows:
        assert (Path(r["path"]) / "summary.json").stat().st_mtime_ns == stamps[r["trial_id"]]
    capsys.readouterr()
    assert cli.main(["status", str(sweep), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["done"] == 4 and len(status["trials"]) == 4
    assert cli.main(["run", str(sweep), "train.lr=0.01"]) == 2  # changes finished trials
    assert "--force" in capsys.readouterr().err
    assert cli.main(["run", str(sweep), "train.lr=0.01", "--dry-run"]) == 0
    assert "changed 4 finished trial(s)" in capsys.readouterr().err
    (tmp_path / "reports/t/index.html").unlink()
    assert cli.main(["report", str(sweep)]) == 0
    assert (tmp_path / "reports/t/index.html").exists()


def test_failed_and_diverged_trials_do_not_stop_others(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    arms = {"a": {}, "boom": {"model.ffn.hidden_dim": 64}, "div": {"train.loss_cap": 0.1}}
    sweep = load_sweep(write_sweep(tmp_path, arms=arms, seeds=(0,)))
    real_train = launch.trainer.train
    calls = []

    def train(cfg, out_dir, **kwargs):
        calls.append(Path(out_dir).name)
        if cfg.model.ffn.hidden_dim == 64:
            raise RuntimeError("injected failure")
        return real_train(cfg, out_dir, **kwargs)

    monkeypatch.setattr(launch.trainer, "train", train)
    assert launch.run_sweep(sweep) == 1  # a failed trial makes the exit status nonzero
    rows = {r["arm"]: r for r in _rows(tmp_path)}
    assert {a: r["state"] for a, r in rows.items()} == {
        "a": "done",
        "boom": "failed",
        "div": "diverged",
    }
    assert rows["boom"]["attempts"] == sweep.max_attempts == 2
    assert rows["boom"]["reason"] == "RuntimeError: injected failure"
    assert "injected failure" in (Path(rows["boom"]["path"]) / "error.txt").read_text()
    assert "above loss_cap" in rows["div"]["reason"]
    assert calls.count(rows["boom"]["trial_id"]) == 2
    assert "boom seed 0" in capsys.readouterr().err
    # Without the failing arm the same results are complete: diverged is a result, exit 0.
    calm = load_sweep(write_sweep(tmp_path, arms={"a": {}, "div": arms["div"]}, seeds=(0,)))
    assert launch.run_sweep(calm) == 0
    assert len(calls) == 4  # nothing retrained


def _run_dir_results(root: Path) -> dict[str, tuple]:
    out = {}
    for r in _rows(root):
        summary = json.loads((root / r["path"] / "summary.json").read_text())
        steps = [
            json.loads(x)["step"]
            for x in (root / r["path"] / "metrics.jsonl").read_text().splitlines()
            if "val_loss" not in x
        ]
        assert steps == sorted(set(steps)), "a resumed trial logged a step twice"
        out[r["trial_id"]] = (r["state"], summary["val_loss"], summary["train_loss"], steps)
    return out


def test_sigkill_mid_trial_then_rerun_matches_uninterrupted(tmp_path, monkeypatch):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    killed.mkdir()
    clean.mkdir()
    sweep = write_sweep(tmp_path, arms={"a": {}}, seeds=(0, 1), steps=120)
    cmd = [sys.executable, "-m", "ablate", "run", str(sweep)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, cwd=killed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + KILL_TIMEOUT_S
    trials = killed / "runs" / "t" / "trials"
    while time.monotonic() < deadline:  # kill once a trial has a checkpoint but no summary
        if any(
            (d / "checkpoint.pt").exists() and not (d / "summary.json").exists()
            for d in (trials.iterdir() if trials.exists() else [])
        ):
            break
        assert proc.poll() is None, "the sweep finished before it could be killed"
        time.sleep(KILL_POLL_S)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "running" in [r["state"] for r in _rows(killed)]
    assert subprocess.run(cmd, cwd=killed, env=env, capture_output=True).returncode == 0
    monkeypatch.chdir(clean)
    assert launch.run_sweep(load_sweep(sweep)) == 0
    resumed, uninterrupted = _run_dir_results(killed), _run_dir_results(clean)
    assert resumed == uninterrupted
    assert {s for s, *_ in resumed.values()} == {"done"}
    froms = [json.loads((p / "summary.json").read_text())["resumed_from"] for p in trials.iterdir()]
    assert max(froms) > 0  # one trial really resumed from a checkpoint


def test_parallel_workers_finish_every_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, seeds=(0, 1), steps=5))
    assert launch.run_sweep(sweep, workers=2) == 0
    rows = _rows(tmp_path)
    assert len(rows) == 4
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in rows)
    assert all((Path(r["path"]) / "summary.json").exists() for r in rows)


def test_trial_killed_after_its_summary_is_recorded_not_retrained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, arms={"a": {}}, seeds=(0,)))
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep)
    row = ledger.claim(max_attempts=1)
    ledger.db.execute("UPDATE trials SET pid = NULL")  # its process is gone
    ledger.close()
    Path(row["path"]).mkdir(parents=True)
    (Path(row["path"]) / "summary.json").write_text(
        json.dumps(
            {"status": "done", "reason": "", "config_hash": row["trial_id"], "val_loss": 1.25}
        )
    )
    monkeypatch.setattr(launch.trainer, "train", lambda *a, **k: pytest.fail("retrained"))
    assert launch.run_sweep(sweep) == 0
    [done] = _rows(tmp_path)
    assert (done["state"], done["metrics"]["val_loss"]) == ("done", 1.25)


def test_default_workers_fill_the_cores_one_per_trial(tmp_path, monkeypatch):
    from ablate.study import workers

    sweep = load_sweep(write_sweep(tmp_path, seeds=(0, 1), steps=2))  # 4 trials, 1 thread each
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert workers.auto_workers(sweep, 4) == 4  # no more workers than trials to run
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert workers.auto_workers(sweep, 4) == 2
    assert workers.auto_workers(sweep, 0) == 1


def test_workers_flag_then_environment(monkeypatch):
    from ablate import cli_study

    monkeypatch.setenv("ABLATE_WORKERS", "3")
    assert (cli_study._workers(None), cli_study._workers(1)) == (3, 1)
    monkeypatch.delenv("ABLATE_WORKERS")
    assert cli_study._workers(None) == 0  # run_sweep then takes workers.auto_workers
    monkeypatch.setenv("ABLATE_WORKERS", "two")
    with pytest.raises(ValueError, match="ABLATE_WORKERS"):
        cli_study._workers(None)
