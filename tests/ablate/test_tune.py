"""Per-arm tuning: the `tune:` section's validation, Optuna studies in a journal beside the
ledger, trials as ordinary ablate trials (cached by id), resume after a kill without repeating
finished Optuna trials, pruning fed by evaluations, final runs at the chosen values."""

from __future__ import annotations

import io
import json

import pytest

from ablate.core.config import ConfigError, config_hash
from ablate.study import tune
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from ablate.study.tune_spec import tune_spec
from tests.ablate.sweep_helpers import write_sweep
from tests.conftest import REPO

optuna = pytest.importorskip("optuna")

TUNE = {"trials": 3, "budget": {"steps": 10}, "lr": {"low": 1e-3, "high": 3e-2}}


@pytest.fixture
def tuned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path, name="tu", steps=12, seeds=(0, 1), tune=TUNE)
    return load_sweep(path)


def _study(sweep, arm):
    return optuna.load_study(study_name=f"{sweep.name}/{arm}", storage=tune.storage(sweep))


def test_tune_runs_studies_then_final_seeds_at_the_chosen_lr(tuned):
    assert tune.tune_sweep(tuned) == 0
    assert (tuned.run_dir / "tune" / tune.JOURNAL).exists()
    ledger = Ledger(tuned.run_dir / "ledger.sqlite", readonly=True)
    rows, meta = ledger.rows(), ledger.meta()
    ledger.close()
    for arm in tuned.arms:
        study = _study(tuned, arm)
        assert len(study.trials) == 3
        chosen = meta["tune"]["arms"][arm]["chosen"]
        assert chosen == study.best_params
        finals = [r for r in rows if r["arm"] == arm]
        assert len(finals) == 2 and all(r["state"] == "done" for r in finals)
        for r in finals:
            assert r["config"]["train"]["lr"] == chosen["lr"]
            assert r["config"]["train"]["steps"] == 12  # full budget, not the tuning one
        ids = {t.user_attrs["trial_id"] for t in study.trials}
        assert len(ids) == 3  # each Optuna trial is an ablate trial with its own id and dir
        for t in study.trials:
            d = tuned.run_dir / "tune" / "trials" / t.user_attrs["trial_id"]
            assert (d / "metrics.jsonl").exists()
            if t.state.name == "COMPLETE":
                summary = json.loads((d / "summary.json").read_text())
                assert summary["config_hash"] == t.user_attrs["trial_id"]
                assert t.value == pytest.approx(summary["val_loss"])


def test_rerun_repeats_no_finished_trial_and_reads_cached_trials(tuned, monkeypatch):
    tune.tune_sweep(tuned)
    calls = []
    monkeypatch.setattr(tune.trainer, "train", lambda *a, **k: calls.append(a) or {})
    before = {a: len(_study(tuned, a).trials) for a in tuned.arms}
    for arm in tuned.arms:
        tune.tune_arm(tuned, arm, stream=io.StringIO())
    assert {a: len(_study(tuned, a).trials) for a in tuned.arms} == before
    assert calls == []


def test_a_killed_trial_is_enqueued_again_and_resumes(tuned, monkeypatch):
    arm = next(iter(tuned.arms))
    study = optuna.create_study(
        storage=tune.storage(tuned), study_name=f"{tuned.name}/{arm}", direction="minimize"
    )
    killed = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)})
    lr = killed.params["lr"]  # left RUNNING, as a kill leaves it
    seen = []
    real = tune.trainer.train

    def spy(cfg, out, **kw):
        seen.append(cfg.train.lr)
        return real(cfg, out, **kw)

    monkeypatch.setattr(tune.trainer, "train", spy)
    summary = tune.tune_arm(tuned, arm, stream=io.StringIO())
    assert seen[0] == pytest.approx(lr)  # the killed values first, then new ones
    assert len(summary["trials"]) == 3 and len(seen) == 3


def test_pruner_is_fed_by_evaluations():
    class FakeTrial:
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    t = FakeTrial()
    cb = tune._Pruning(t)
    cb({"step": 5, "loss": 3.0})  # a train row: not an evaluation
    cb({"step": 5, "val_loss": 2.5})
    with pytest.raises(optuna.TrialPruned):
        cb({"step": 10, "val_loss": 2.4})
    cb({"status": "done", "val_loss": 2.4, "step": 10})  # the summary: ignored
    assert t.reported == [(5, 2.5), (10, 2.4)]


def test_tuned_config_scales_min_lr_and_changes_the_id(tuned):
    cfg = tuned.trials[0].cfg
    new = tune.tuned_config(cfg, {"lr": cfg.train.lr / 10}, steps=5, seed=3)
    assert new.train.min_lr == pytest.approx(cfg.train.min_lr / 10)
    assert (new.train.steps, new.train.seed) == (5, 3)
    assert new.train.warmup_steps <= 5 and config_hash(new) != config_hash(cfg)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({**TUNE, "trials": 0}, "tune.trials"),
        ({k: v for k, v in TUNE.items() if k != "lr"}, "tune.lr"),
        ({**TUNE, "lr": {"low": 0.0, "high": 1e-2}}, "tune.lr.low"),
        ({**TUNE, "lr": {"low": 1e-2, "high": 1e-3}}, "tune.lr"),
        ({**TUNE, "budget": {"epochs": 3}}, "tune.budget"),
        ({**TUNE, "pruner": "hyperband"}, "tune.pruner"),
        ({**TUNE, "warmup_steps": {"low": 0.5, "high": 4}}, "tune.warmup_steps.low"),
        ({**TUNE, "lrr": 1}, "tune.lrr"),
        ({**TUNE, "eval_every": -1}, "tune.eval_every"),
    ],
)
def test_tune_section_is_validated(raw, key):
    with pytest.raises(ConfigError) as e:
        tune_spec(raw, "s.yaml", (0,))
    assert e.value.key == key


def test_optional_space_and_defaults():
    spec = tune_spec(
        {**TUNE, "weight_decay": {"low": 0.0, "high": 0.2}, "warmup_steps": {"low": 0, "high": 4}},
        "s",
        (7,),
    )
    assert spec["seed"] == 7 and spec["pruner"] == "median" and spec["storage"] == ""
    assert spec["space"]["lr"]["log"] and spec["space"]["warmup_steps"]["int"]
    assert not spec["space"]["weight_decay"]["log"]


def test_ablate_run_refuses_a_tune_sweep(tuned):
    from ablate.cli import main

    assert main(["run", str(tuned.path)]) != 0
    assert not (tuned.run_dir / "ledger.sqlite").exists()


def test_shipped_tuned_headline_sweep_loads():
    sweep = load_sweep(REPO / "sweeps" / "mla_vs_mha_tuned.yaml")
    assert set(sweep.arms) == {"mha", "mqa", "mla"} and sweep.tune["space"]["lr"]["log"]


def test_report_shows_the_tuning_figure_per_arm(tuned):
    import warnings

    from ablate.report.charts_tune import tune_chart
    from ablate.report.html import render

    tune.tune_sweep(tuned)
    ledger = Ledger(tuned.run_dir / "ledger.sqlite", readonly=True)
    meta = ledger.meta()
    ledger.close()
    meta["tune"]["arms"]["a"]["trials"][0]["state"] = "pruned"  # every marker kind is drawn
    meta["tune"]["arms"]["a"]["trials"][1].update(state="diverged", value=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figs = tune_chart(meta, list(tuned.arms), {a: a for a in tuned.arms})
    assert len(figs) == 1 and figs[0]["png"]
    assert tune_chart({}, ["a"], {"a": "a"}) == []
    html = render(tuned.run_dir, tuned.report_dir).read_text()
    assert "Learning-rate tuning (Optuna)" in html


def test_ablate_tune_runs_its_final_trials_in_worker_processes(tuned, monkeypatch, capsys):
    """`--workers 2` runs the final trials in two spawned workers, which get the parent's tuned
    trials (re-expanding the file gave them the untuned ids: all 4 stayed pending, exit 0),
    and the speed benchmark measures those trials; without the flag $ABLATE_WORKERS, else 0
    (as many as the cores hold) as in `ablate run`."""
    import ablate.study.launch as launch
    from ablate.cli import main

    tiny = ["--repetitions", "1", "--warmup", "0", "--steps", "1", "--decode-tokens", "2"]
    assert main(["bench", str(tuned.path), *tiny]) == 2  # not tuned yet: no final trials
    assert main(["run", str(tuned.path), "--dry-run"]) == 0
    assert "follow the values `ablate tune` chooses" in capsys.readouterr().err
    assert main(["tune", str(tuned.path), "--workers", "2"]) == 0
    rows = Ledger(tuned.run_dir / "ledger.sqlite", readonly=True).rows()
    assert len(rows) == 4 and {r["state"] for r in rows} == {"done"}
    speed = json.loads((tuned.run_dir / "speed.json").read_text())  # `ablate run`'s last phase
    assert {e["trial_id"] for e in speed["arms"].values()} <= {r["trial_id"] for r in rows}
    capsys.readouterr()
    assert main(["run", str(tuned.path), "--dry-run"]) == 0  # the final trials, done
    out = capsys.readouterr().out
    assert all(f"{r['trial_id']}  done" in out for r in rows)
    (tuned.run_dir / "speed.json").unlink()
    assert main(["bench", str(tuned.path), *tiny]) == 0  # `ablate bench`: the same trials
    speed = json.loads((tuned.run_dir / "speed.json").read_text())
    assert {e["trial_id"] for e in speed["arms"].values()} <= {r["trial_id"] for r in rows}
    seen = []
    monkeypatch.setattr(launch, "run_sweep", lambda sweep, **kw: seen.append(kw["workers"]) or 0)
    monkeypatch.setenv("ABLATE_WORKERS", "0")
    assert main(["tune", str(tuned.path), "--no-bench"]) == 0
    assert seen == [0]


@pytest.mark.parametrize(("warmup", "pruned_at_20"), [(0, True), (40, False)])
def test_pruner_warmup_keeps_early_steps_from_pruning(warmup, pruned_at_20):
    """Two finished trials at val loss 2.0 by step 20; a third at 3.0 is pruned at step 20
    unless `pruner_warmup` says no pruning before step 40; at step 40 it is pruned either way."""
    spec = tune_spec({**TUNE, "pruner_warmup": warmup}, "s", (0,))
    assert spec["pruner_warmup"] == warmup
    study = optuna.create_study(pruner=tune.make_pruner(spec))
    for _ in range(2):
        t = study.ask()
        for step in (20, 40):
            t.report(2.0, step)
        study.tell(t, 2.0)
    t = study.ask()
    t.report(3.0, 20)
    assert t.should_prune() == pruned_at_20
    t.report(3.0, 40)
    assert t.should_prune()
    with pytest.raises(ConfigError) as e:
        tune_spec({**TUNE, "pruner_warmup": -1}, "s", (0,))
    assert e.value.key == "tune.pruner_warmup"
