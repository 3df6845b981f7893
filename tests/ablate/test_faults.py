"""Fault injection: read-only directories and ledger, a full disk, a failed error.txt write,
deterministic failures and a second `ablate run` of another spec. Each fault ends in one message
naming the path, a nonzero exit, no partial file, and a rerun that resumes.

Read-only directories work through permissions: as root (which ignores permission bits) the
faulty step runs with the effective uid of `nobody`; the rerun that resumes runs as is (the
embedded corpus under a root-only Python install is not readable to `nobody`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from ablate import cli
from ablate.core import checkpoint
from ablate.study import launch
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep
from tests.conftest import REPO

NOBODY = 65534
START_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def work(monkeypatch):
    """A working directory `nobody` owns (pytest's own temp tree is closed to other users)."""
    path = Path(tempfile.mkdtemp(prefix="ablate-faults-"))
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    monkeypatch.chdir(path)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(path)


@contextlib.contextmanager
def unprivileged():
    """Run the block as `nobody` when root, so permission bits apply; as is otherwise."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _run(sweep: Path, *args: str) -> int:
    load_sweep(sweep, check_data=True)  # the data preflight as root (nobody cannot read it)
    with unprivileged():
        return cli.main(["run", str(sweep), *args])


def _rows() -> list[dict]:
    return Ledger(Path("runs/t/ledger.sqlite"), readonly=True).rows()


def _no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob("*.tmp")], "a partial file was left behind"


def _one_error_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    for needle in needles:
        assert needle in line, (needle, line)


def test_read_only_runs_and_reports_directories(work, capsys):
    sweep = write_sweep(work, seeds=(0,))
    for name in ("runs", "reports"):
        with unprivileged():
            (work / name).mkdir()
        (work / name).chmod(0o555)
        assert _run(sweep) == cli.EXIT_IO
        _one_error_line(capsys.readouterr().err, str(work / name), "Permission denied")
        assert not (work / "runs" / "t").exists()  # refused before any work
        (work / name).chmod(0o755)
    assert cli.main(["run", str(sweep)]) == 0, capsys.readouterr().err
    assert [r["state"] for r in _rows()] == ["done", "done"]


def test_read_only_ledger_then_rerun(work, capsys):
    sweep = write_sweep(work, seeds=(0,))
    with unprivileged():
        Ledger(Path("runs/t/ledger.sqlite")).close()
    Path("runs/t/ledger.sqlite").chmod(0o444)
    assert _run(sweep) == cli.EXIT_IO
    _one_error_line(capsys.readouterr().err, "runs/t/ledger.sqlite", "Permission denied")
    Path("runs/t/ledger.sqlite").chmod(0o644)
    assert cli.main(["run", str(sweep)]) == 0, capsys.readouterr().err


def test_read_only_trial_directory_is_given_back_and_resumes(work, capsys):
    sweep = write_sweep(work, arms={"a": {}}, seeds=(0,))
    [trial] = load_sweep(sweep).trials
    trial_dir = work / "runs" / "t" / "trials" / trial.trial_id
    with unprivileged():
        trial_dir.mkdir(parents=True)
    trial_dir.chmod(0o555)
    assert _run(sweep) == cli.EXIT_IO
    _one_error_line(capsys.readouterr().err, f"trials/{trial.trial_id}/", "Permission denied")
    [row] = _rows()
    assert (row["state"], row["attempts"]) == ("pending", 0)  # not failed: a fault of the disk
    assert not (trial_dir / "error.txt").exists()
    trial_dir.chmod(0o755)
    assert cli.main(["run", str(sweep)]) == 0, capsys.readouterr().err
    assert [(r["state"], r["attempts"]) for r in _rows()] == [("done", 1)]


def test_full_disk_mid_trial_leaves_no_partial_checkpoint(work, monkeypatch, capsys):
    sweep = write_sweep(work, arms={"a": {}}, seeds=(0,), steps=15)
    real_save, saves = torch.save, []

    def save(obj, f, *a, **k):  # the disk fills up during the second checkpoint
        saves.append(1)
        if len(saves) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    assert cli.main(["run", str(sweep)]) == cli.EXIT_IO
    _one_error_line(capsys.readouterr().err, "checkpoint.pt", "No space left", "rerun")
    _no_temporaries(work)
    [row] = _rows()
    assert row["state"] == "pending"
    step = torch.load(Path(row["path"]) / "checkpoint.pt", weights_only=False)["step"]
    assert step == 5  # the first checkpoint is intact
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert cli.main(["run", str(sweep)]) == 0
    summary = json.loads((Path(row["path"]) / "summary.json").read_text())
    assert (summary["status"], summary["resumed_from"]) == ("done", 5)


def test_full_filesystem_before_the_ledger(work, capsys):
    """A real full filesystem (a 1 MiB tmpfs, filled up); needs the right to mount."""
    mnt = work / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        sweep = write_sweep(mnt, seeds=(0,))
        subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/fill", "bs=64k"], capture_output=True)
        os.chdir(mnt)
        assert cli.main(["run", str(sweep)]) == cli.EXIT_IO
        _one_error_line(capsys.readouterr().err, "No space left", "rerun")
        (mnt / "fill").unlink()
        assert cli.main(["run", str(sweep)]) == 0
    finally:
        os.chdir(work)
        subprocess.run(["umount", "-l", str(mnt)])


def test_failed_error_txt_write_does_not_kill_the_sweep(work, monkeypatch, capsys):
    sweep = load_sweep(write_sweep(work, seeds=(0,)))
    real_train, real_write = launch.trainer.train, launch.atomic_write_text

    def train(cfg, out_dir, **kwargs):
        if cfg.model.ffn.hidden_dim == 96:
            raise RuntimeError("injected failure")
        return real_train(cfg, out_dir, **kwargs)

    def write(path, text):
        if Path(path).name == "error.txt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, text)

    monkeypatch.setattr(launch.trainer, "train", train)
    monkeypatch.setattr(launch, "atomic_write_text", write)
    assert launch.run_sweep(sweep) == 1  # the other trial still ran
    assert {r["arm"]: r["state"] for r in _rows()} == {"a": "done", "b": "failed"}
    assert "could not write error.txt" in capsys.readouterr().err
    assert not list(work.rglob("error.txt"))  # never an empty one


def test_deterministic_error_fails_once_and_names_the_key(work, monkeypatch, capsys):
    sweep = load_sweep(write_sweep(work, arms={"a": {}}, seeds=(0, 1)))
    assert sweep.max_attempts > 1
    calls = []

    def train(cfg, out_dir, **kwargs):
        calls.append(out_dir)
        raise ValueError("corpus.txt: data.path: the file is empty")

    monkeypatch.setattr(launch.trainer, "train", train)
    assert launch.run_sweep(sweep) == 1
    assert len(calls) == 2  # once per trial, no retries
    rows = _rows()
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", 1)] * 2
    assert all("data.path" in r["reason"] for r in rows)
    assert "not retried" in capsys.readouterr().err


def test_second_run_of_another_spec_is_refused_and_first_keeps_its_trials(work, capsys):
    sweep = write_sweep(work, arms={"a": {}}, seeds=(0,), steps=2000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ablate", "run", str(sweep)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not list(work.glob("runs/t/trials/*/metrics.jsonl")):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert cli.main(["run", str(sweep), "train.lr=0.01"]) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err and "Wait for it to finish" in err
        [row] = _rows()
        assert (row["state"], row["pid"]) == ("running", first.pid)  # still the first's
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert b"Traceback" not in first.stderr.read()
    other = load_sweep(sweep, ["train.lr=0.01"])
    ledger = Ledger(Path("runs/t/ledger.sqlite"))
    ledger.sync(other)  # the killed holder is stale now
    ledger.close()
