"""A fine-tune study end to end (base pre-training -> two fine-tune arms with different lr, only
shipped components): order, the recorded starting checkpoint, dry run, status and report; a
diverged base blocks its stages; an executor submits only runnable trials."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from ablate import cli
from ablate.core import stages
from ablate.study import executors
from ablate.study.executors import Executor, Handle
from ablate.study.launch import ledger_path
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

ARMS = {
    "base": {},
    "ft_hi": {"from": "base", "train.steps": 4, "train.lr": 3e-3, "train.warmup_steps": 0},
    "ft_lo": {
        "from": "base",
        "train.steps": 4,
        "train.lr": 1e-6,
        "train.min_lr": 1e-7,
        "train.warmup_steps": 0,
    },
}


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _rows(sweep_path: Path) -> dict[str, dict]:
    ledger = Ledger(ledger_path(load_sweep(sweep_path)), readonly=True)
    rows = {r["arm"]: r for r in ledger.rows()}
    ledger.close()
    return rows


def test_fine_tune_study_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path, arms=ARMS, baseline="base", seeds=(0,), steps=20)
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    table = capsys.readouterr().out.splitlines()
    base_id = load_sweep(path).trials[0].trial_id
    assert table[0].split()[:5] == ["arm", "seed", "trial_id", "state", "after"]
    assert [line.split()[3:5] for line in table[2:]] == [["waiting", f"base:{base_id}"]] * 2
    assert cli.main(["run", str(path), "--workers", "2"]) == 0  # two worker processes
    rows = _rows(path)
    assert {a: r["state"] for a, r in rows.items()} == dict.fromkeys(ARMS, "done")
    base_dir = Path(rows["base"]["path"])
    for arm in ("ft_hi", "ft_lo"):
        trial = Path(rows[arm]["path"])
        summary = json.loads((trial / "summary.json").read_text())
        assert summary["init_from"]["trial_id"] == base_id  # the checkpoint it started from
        assert summary["init_from"]["sha256"] == stages.weights_sha256(base_dir)
        assert summary["steps"] == 4 and rows[arm]["waits_for"] == [base_id]
        # it started after the base was done: its record is newer than the base's summary
        assert (trial / stages.RECORD).stat().st_mtime >= (
            base_dir / "summary.json"
        ).stat().st_mtime
    val = {a: r["metrics"]["val_loss"] for a, r in rows.items()}
    assert abs(val["ft_lo"] - val["base"]) < 1e-3  # lr 1e-6: still the base's weights
    assert val["ft_hi"] != val["ft_lo"]
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    assert "3 done" in capsys.readouterr().out
    html = (tmp_path / "reports/t/index.html").read_text()
    marks = html.count('<span class="muted stage">from: base</span>')
    assert marks == 2  # the two stage arms are marked; the base is a row too
    assert '<td class="l">base</td>' in html
    with open(tmp_path / "reports/t/results.csv") as f:
        assert sorted(r["arm"] for r in csv.DictReader(f)) == sorted(ARMS)


def test_a_diverged_base_blocks_its_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    arms = {**ARMS, "base": {"train.loss_cap": 0.1}}  # diverges after warm-up
    path = write_sweep(tmp_path, arms=arms, baseline="base", seeds=(0,), steps=6)
    assert cli.main(["run", str(path), "--workers", "1"]) == 0  # diverged is a result
    rows = _rows(path)
    assert {a: r["state"] for a, r in rows.items()} == {
        "base": "diverged",
        "ft_hi": "blocked",
        "ft_lo": "blocked",
    }
    assert "ended diverged: training loss" in rows["ft_hi"]["reason"]
    assert not Path(rows["ft_hi"]["path"]).exists()  # never started
    capsys.readouterr()
    assert cli.main(["status", str(path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["blocked"] == 2 and status["counts"]["diverged"] == 1
    assert status["progress"]["finished"] == 3  # blocked trials will not run: not left to do
    html = (tmp_path / "reports/t/index.html").read_text()
    assert "ended diverged" in html


class _Instant(Handle):
    def __init__(self, trial_id: str) -> None:
        self.record = {"executor": "fake", "job_id": f"job-{trial_id}", "trial_id": trial_id}
        self.polls = 0

    def done(self) -> bool:
        self.polls += 1
        return self.polls > 1  # finished at the second poll

    def outcome(self) -> dict:
        return {"status": "done", "summary": {}}


class _Fake(Executor):
    name = "fake"

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []

    def submit(self, jobs):
        self.rounds.append([j["arm"] for j in jobs])
        return [_Instant(j["trial_id"]) for j in jobs]

    def reattach(self, record):
        return None


def test_executor_submits_only_runnable_trials_and_repolls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, arms=ARMS, baseline="base", seeds=(0, 1)))
    ledger = Ledger(ledger_path(sweep))
    ledger.sync(sweep)
    fake = _Fake()
    executors.drive(sweep, ledger, fake, io.StringIO(), poll_s=0)
    assert fake.rounds[0] == ["base", "base"]  # the children waited for both bases
    assert sorted(fake.rounds[1]) == ["ft_hi", "ft_hi", "ft_lo", "ft_lo"]
    assert {r["state"] for r in ledger.rows()} == {"done"}
    ledger.close()
