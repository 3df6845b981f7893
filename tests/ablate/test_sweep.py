"""Sweep files: expansion (arms, grid, zip, seeds, overrides, budget) and whole-sweep validation."""

from __future__ import annotations

import json

import pytest

from ablate import cli
from ablate.core.config import ConfigError, config_hash
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep
from tests.conftest import REPO

SHIPPED = sorted((REPO / "sweeps").glob("*.yaml"))  # sweeps/base/ holds bases, not sweeps


def test_arms_times_seeds_with_overrides(tmp_path):
    s = load_sweep(write_sweep(tmp_path, seeds=(0, 1, 2), steps=7))
    assert [(t.arm, t.seed) for t in s.trials] == [(a, k) for a in "ab" for k in (0, 1, 2)]
    assert len({t.trial_id for t in s.trials}) == 6
    for t in s.trials:
        assert t.trial_id == config_hash(t.cfg)
        assert (t.cfg.train.seed, t.cfg.train.steps) == (t.seed, 7)
        assert t.cfg.model.dim == 32  # sweep-wide `overrides`
        assert t.cfg.tracking.wandb == "disabled"
    assert {t.cfg.model.ffn.hidden_dim for t in s.trials if t.arm == "b"} == {96}
    assert {t.cfg.model.ffn.hidden_dim for t in s.trials if t.arm == "a"} == {0}
    assert [t.trial_id for t in load_sweep(s.path).trials] == [t.trial_id for t in s.trials]


def test_grid_zip_and_explicit_arms_compose(tmp_path):
    grid = load_sweep(
        write_sweep(
            tmp_path,
            name="g",
            arms={},
            seeds=(0,),
            baseline="lr=0.001,hidden_dim=64",
            grid={"train.lr": [0.001, 0.002], "model.ffn.hidden_dim": [64, 96]},
        )
    )
    assert list(grid.arms) == [
        "lr=0.001,hidden_dim=64",
        "lr=0.001,hidden_dim=96",
        "lr=0.002,hidden_dim=64",
        "lr=0.002,hidden_dim=96",
    ]
    assert {(t.cfg.train.lr, t.cfg.model.ffn.hidden_dim) for t in grid.trials} == {
        (0.001, 64),
        (0.001, 96),
        (0.002, 64),
        (0.002, 96),
    }
    zipped = load_sweep(
        write_sweep(
            tmp_path,
            name="z",
            seeds=(0,),
            baseline="a/lr=0.001,weight_decay=0.0",
            zip={"train.lr": [0.001, 0.003], "train.weight_decay": [0.0, 0.2]},
        )
    )
    assert list(zipped.arms) == [
        "a/lr=0.001,weight_decay=0.0",
        "a/lr=0.003,weight_decay=0.2",
        "b/lr=0.001,weight_decay=0.0",
        "b/lr=0.003,weight_decay=0.2",
    ]
    t = next(t for t in zipped.trials if t.arm == "b/lr=0.003,weight_decay=0.2")
    assert (t.cfg.train.lr, t.cfg.train.weight_decay, t.cfg.model.ffn.hidden_dim) == (
        0.003,
        0.2,
        96,
    )


def test_command_line_overrides_apply_to_every_arm(tmp_path):
    s = load_sweep(write_sweep(tmp_path, steps=10), ["train.steps=3", "train.lr=0.01"])
    assert {(t.cfg.train.steps, t.cfg.train.lr) for t in s.trials} == {(3, 0.01)}
    assert s.cli_overrides == ("train.steps=3", "train.lr=0.01")
    ids = {t.trial_id for t in load_sweep(s.path).trials}
    assert ids.isdisjoint(t.trial_id for t in s.trials)


def test_token_budget_converts_to_equal_steps(tmp_path):
    per_step = 4 * 32  # FAST batch_size x seq_len
    s = load_sweep(write_sweep(tmp_path, budget={"tokens": per_step * 12 + 5}))
    assert {t.cfg.train.steps for t in s.trials} == {12}
    bad = write_sweep(
        tmp_path,
        name="u",
        budget={"tokens": per_step * 12},
        arms={"a": {}, "b": {"data.batch_size": 8}},
    )
    with pytest.raises(ConfigError, match="budget.tokens.*different number of steps"):
        load_sweep(bad)


@pytest.mark.parametrize(
    ("extra", "key", "text"),
    [
        (
            {"arms": {"a": {}, "mla": {"model.ffn.hidden_dimm": 3}}},
            "arms.mla.model.ffn.hidden_dimm",
            "did you mean: hidden_dim",
        ),
        (
            {"arms": {"a": {}, "b": {"model.ffn.hidden_dim": "wide"}}},
            "arms.b.model.ffn.hidden_dim",
            "expected int",
        ),
        (
            {"arms": {"a": {}, "b": {"model.attention.name": "mhaa"}}},
            "arms.b.model.attention.name",
            "unknown attention",
        ),
        ({"grid": {"train.lrr": [1e-3]}}, "grid.train.lrr", "did you mean: lr"),
        ({"overrides": {"model.dimm": 3}}, "overrides.model.dimm", "unknown key"),
        ({"baseline": "c"}, "baseline", "not an arm"),
        ({"seedz": [0]}, "seedz", "did you mean: seeds"),
        ({"zip": {"train.lr": [1e-3, 2e-3], "train.beta1": [0.9]}}, "zip", "equal lengths"),
        ({"arms": {"a": {}, "b": {}}}, "arms.b", "same config"),
        ({"budget": {"epochs": 3}}, "budget", "steps: N"),
        ({"name": "a b"}, "name", "letters"),
        ({"plugins": ["no_such_plugin_module"]}, "plugins", "could not be imported"),
        ({"tracking": {"wandb": "sometimes"}}, "tracking.wandb", "must be one of"),
    ],
)
def test_errors_name_sweep_file_and_key(tmp_path, extra, key, text):
    path = write_sweep(tmp_path, **extra)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert info.value.source == str(path)
    assert info.value.key == key
    assert text in str(info.value)


def test_cli_error_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path, arms={"a": {}, "mla": {"model.ffn.hidden_dimm": 3}})
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "arms.mla.model.ffn.hidden_dimm" in err and str(path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists()


def test_dry_run_prints_trials_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    s = load_sweep(write_sweep(tmp_path))
    assert cli.main(["run", str(s.path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for t in s.trials:
        assert t.trial_id in out
    assert "model.ffn.hidden_dim=96" in out and "new" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.yaml"]


def test_shipped_sweeps_exist():
    assert REPO / "sweeps" / "smoke.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_sweep_expands_and_validates(path):
    s = load_sweep(path)
    assert s.baseline in s.arms and len(s.arms) >= 2
    assert len(s.trials) == len(s.arms) * len(s.seeds)
    assert len({t.trial_id for t in s.trials}) == len(s.trials)
    # one pre-training budget; an arm that starts `from:` another (post-training) trains on top
    assert len({t.cfg.train.steps for t in s.trials if not t.parent}) == 1
    assert all(t.cfg.train.steps == 0 for t in s.trials if t.parent)


PINNED_IDS = json.loads((REPO / "tests" / "ablate" / "shipped_ids.json").read_text())


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_trial_ids_are_pinned(path):
    """A change to trial identity must be deliberate: regenerate shipped_ids.json with it."""
    s = load_sweep(path)
    assert {f"{t.arm} {t.seed}": t.trial_id for t in s.trials} == PINNED_IDS[s.name]
    # no shipped arm drops a field by switching a component (a `scale:` rule records its numbers)
    assert [n for n in s.notes if not n.startswith("scale ")] == []
