"""Ctrl-C of a parallel sweep, as a terminal sends it (SIGINT to the foreground process group):
one line, no traceback, nothing left running, and a rerun that resumes every trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablate.study.ledger import Ledger
from tests.ablate.sweep_helpers import write_sweep
from tests.conftest import REPO

START_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 60


def _session(sid: int) -> list[int]:
    """Pids of the processes still in session `sid` (the command and anything it started)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6: session id
            pids.append(int(stat.parent.name))
    return pids


def _start(tmp_path: Path, steps: int) -> tuple[subprocess.Popen, list]:
    sweep = write_sweep(tmp_path, arms={"a": {}}, seeds=(0, 1), steps=steps)
    cmd = [sys.executable, "-m", "ablate", "run", str(sweep), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(list(tmp_path.glob("runs/t/trials/*/checkpoint.pt"))) < 2:  # both are training
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, cmd


def _finish(proc: subprocess.Popen) -> str:
    err = proc.communicate(timeout=EXIT_TIMEOUT_S)[1]
    deadline = time.monotonic() + 10  # the resource tracker exits once its pipe closes
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session(proc.pid) == [], "a process outlived the command"
    assert proc.returncode == 130
    assert "Traceback" not in err, err
    assert [x for x in err.splitlines() if "interrupted" in x] == [
        "interrupted: stopped after the last finished step; rerun the same command to resume"
    ]
    return err


def _resumes(tmp_path: Path, cmd: list) -> None:
    rows = Ledger(tmp_path / "runs/t/ledger.sqlite", readonly=True).rows()
    assert {(r["state"], r["attempts"]) for r in rows} == {("pending", 0)}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True).returncode == 0
    rows = Ledger(tmp_path / "runs/t/ledger.sqlite", readonly=True).rows()
    assert [r["state"] for r in rows] == ["done", "done"]
    for r in rows:
        summary = json.loads((tmp_path / r["path"] / "summary.json").read_text())
        assert summary["resumed_from"] > 0


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_at_a_checkpoint(tmp_path):
    proc, cmd = _start(tmp_path, steps=200)
    os.killpg(proc.pid, signal.SIGINT)
    _finish(proc)
    _resumes(tmp_path, cmd)


def test_second_ctrl_c_forces_exit_without_orphans(tmp_path):
    proc, cmd = _start(tmp_path, steps=100000)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _finish(proc)
    rows = Ledger(tmp_path / "runs/t/ledger.sqlite", readonly=True).rows()
    assert {(r["state"], r["attempts"]) for r in rows} == {("pending", 0)}  # resumable
