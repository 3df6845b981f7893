"""The `slurm` executor against a real single-node SLURM (Debian's slurm-wlm with munge).

The fixture starts munged, slurmctld and slurmd with a configuration in a temporary directory
(SLURM_CONF; nothing under /etc is written) and stops exactly those daemons afterwards. It
needs root and the binaries; otherwise the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.ablate.test_executors import _run

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue")
CONF = """ClusterName=local
SlurmctldHost={host}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
ReturnToService=2
NodeName={host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _pid(path: Path) -> int | None:
    for _ in range(50):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.1)
    return None


@pytest.fixture
def slurm(tmp_path_factory, monkeypatch):
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and slurm-wlm + munge (missing: {missing or 'root'})")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 512
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(CONF.format(host=host, d=d, cpus=os.cpu_count(), mem=mem))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    started = []
    try:
        subprocess.run(["munged", "--force"], check=True, capture_output=True)
        started.append(_pid(Path("/run/munge/munged.pid")))
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon], check=True, capture_output=True)
            started.append(_pid(d / f"{daemon}.pid"))
        for _ in range(60):
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the SLURM node never became idle: {state.stdout} {state.stderr}")
        yield
        for _ in range(120):  # the jobs' steps end only once slurmctld has heard of them
            if not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout:
                break
            time.sleep(0.5)
    finally:
        for pid in reversed([p for p in started if p]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


@pytest.mark.slow
def test_real_slurm_equals_local(tmp_path, monkeypatch, slurm):
    """A job array on the real scheduler: the same trial ids and validation losses as local."""
    pytest.importorskip(
        "submitit", reason="submitit not installed (pip install 'ablate-lm[slurm]')"
    )
    local = _run(tmp_path / "local", monkeypatch, "local")
    assert _run(tmp_path / "slurm", monkeypatch, "slurm") == local
