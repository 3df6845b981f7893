"""W&B: trial runs carry tags (arm, component choices, seed); a sweep's results table and its
HTML report are logged as a W&B Table and an artifact (offline mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ablate.study.sweep import load_sweep
from ablate.study.tracking import TrackingHealth, WandbCallback, log_report, run_tags
from tests.ablate.sweep_helpers import write_sweep

wandb = pytest.importorskip("wandb")


def test_run_tags_name_arm_components_and_seed():
    cfg = {"model": {"attention": {"name": "mla", "kv_lora_rank": 64}, "ffn": {"name": "moe"}}}
    assert run_tags(cfg, "mla", 2) == ["arm=mla", "attention=mla", "ffn=moe", "seed=2"]
    assert all(len(t) <= 64 for t in run_tags({"x": {"name": "n" * 100}}, "a" * 100, 0))


def test_trial_runs_are_started_with_their_tags(tmp_path, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path, tracking="offline"))
    trial = sweep.trials[1]
    seen = {}

    class Run:
        summary: dict = {}

        def log(self, *a, **k):
            pass

        def finish(self, **k):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kw: seen.update(kw) or Run())
    cb = WandbCallback(
        trial.cfg,
        sweep_name=sweep.name,
        arm=trial.arm,
        trial_id=trial.trial_id,
        run_id=f"{trial.trial_id}-t",
        trial_dir=tmp_path / "t",
        health=TrackingHealth(),
    )
    cb({"step": 1, "loss": 3.0})
    assert f"arm={trial.arm}" in seen["tags"] and f"seed={trial.seed}" in seen["tags"]
    assert any(t.startswith("ffn=") for t in seen["tags"])


def test_report_is_logged_as_a_table_and_an_artifact_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = load_sweep(write_sweep(tmp_path, name="wb", tracking="offline"))
    out = tmp_path / "reports"
    out.mkdir()
    (out / "index.html").write_text("<html>report-marker</html>")
    (out / "results.csv").write_text("arm,seed,val_loss\na,0,3.25\nb,0,3.5\n")
    added = []
    real_add = wandb.Artifact.add_file

    def add_file(self, path, *args, **kw):
        if self.type == "report":  # not the table's own artifact
            added.append((self.name, kw.get("name"), Path(path).read_text()))
        return real_add(self, path, *args, **kw)

    monkeypatch.setattr(wandb.Artifact, "add_file", add_file)
    assert log_report(sweep, out / "index.html", out / "results.csv") is None
    assert added == [("wb-report", "index.html", "<html>report-marker</html>")]
    [run] = (sweep.run_dir / "wandb").glob("offline-run-*")
    # the W&B service's own file is there too (a relative dir was resolved in the service's
    # working directory, an earlier test's, when an earlier test had started it)
    assert list(run.glob("run-*.wandb"))
    [table] = run.glob("files/media/table/results_*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"] == ["arm", "seed", "val_loss"]
    assert logged["data"] == [["a", 0.0, 3.25], ["b", 0.0, 3.5]]


def test_disabled_tracking_logs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, name="off", tracking="disabled"))
    monkeypatch.setattr(wandb, "init", lambda **kw: pytest.fail("wandb started"))
    assert log_report(sweep, tmp_path / "x.html", tmp_path / "x.csv") is None
