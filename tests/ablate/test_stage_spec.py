"""Stages in a sweep file (`ablate.study.stage_spec`): `from: ARM` and `${trial:ARM}` expand
to references to the same-seed trial, in a run order, validated with the sweep key named."""

from __future__ import annotations

import pytest

from ablate.core.config import ConfigError
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

FINE_TUNES = {
    "base": {},
    "ft_hi": {"from": "base", "train.steps": 3, "train.lr": 1e-3},
    "ft_lo": {"from": "base", "train.steps": 3, "train.lr": 1e-4},
}


def _by_arm(sweep):
    out: dict[str, dict[int, object]] = {}
    for t in sweep.trials:
        out.setdefault(t.arm, {})[t.seed] = t
    return out


def test_base_trained_once_per_seed_and_each_stage_arm_starts_from_it(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, arms=FINE_TUNES, baseline="base"))
    assert len(sweep.trials) == 3 * 2  # one base trial per seed, not one per fine-tune arm
    arms = _by_arm(sweep)
    for seed in (0, 1):
        base = arms["base"][seed]
        assert base.parent == "" and base.after == () and base.cfg.train.init_from == ""
        assert base.cfg.train.steps == 10  # the sweep's budget
        for arm in ("ft_hi", "ft_lo"):
            t = arms[arm][seed]
            assert t.parent == base.trial_id and t.after == (base.trial_id,)
            assert t.cfg.train.init_from == f"trial:{base.trial_id}"
            assert t.cfg.train.steps == 3  # its own steps, not the budget
            assert "from" not in t.overrides
    order = [t.arm for t in sweep.trials]
    assert order.index("ft_hi") > order.index("base")
    assert sweep.report["stages"]["from"] == {"ft_hi": "base", "ft_lo": "base"}
    assert sweep.arms["ft_hi"] == {"train.steps": 3, "train.lr": 1e-3}


def test_a_child_id_follows_its_parents_config(tmp_path):
    one = _by_arm(load_sweep(write_sweep(tmp_path, arms=FINE_TUNES, baseline="base")))
    arms = {**FINE_TUNES, "base": {"train.lr": 2e-3}}  # only the parent changes
    two = _by_arm(load_sweep(write_sweep(tmp_path, name="u", arms=arms, baseline="base")))
    assert one["base"][0].trial_id != two["base"][0].trial_id
    assert one["ft_hi"][0].trial_id != two["ft_hi"][0].trial_id
    assert two["ft_hi"][0].parent == two["base"][0].trial_id
    # the child's own config is unchanged: the id differs through the parent's id alone
    assert one["ft_hi"][0].cfg.train.lr == two["ft_hi"][0].cfg.train.lr


def test_references_in_values_and_chains(tmp_path):
    arms = {
        "teacher": {},
        "rl": {"from": "teacher", "train.steps": 2},
        "student": {"train.init_from": "${trial:rl}"},  # a reference in any string value
    }
    sweep = load_sweep(write_sweep(tmp_path, arms=arms, baseline="teacher", seeds=(3,)))
    t = {x.arm: x for x in sweep.trials}
    assert t["student"].cfg.train.init_from == f"trial:{t['rl'].trial_id}"
    assert t["student"].after == (t["rl"].trial_id,) and t["student"].parent == ""
    assert t["student"].cfg.train.steps == 10  # no `from:`: the budget
    assert t["student"].overrides == {"train.init_from": "${trial:rl}"}  # as written
    assert sweep.report["stages"]["after"]["student"] == ["rl"]


def test_written_order_is_kept_and_a_child_moves_after_its_parent(tmp_path):
    arms = {"ft": {"from": "base", "train.steps": 2}, "base": {}, "other": {"train.lr": 2e-3}}
    sweep = load_sweep(write_sweep(tmp_path, arms=arms, baseline="base", seeds=(0,)))
    assert [t.arm for t in sweep.trials] == ["base", "ft", "other"]
    assert list(sweep.arms) == ["ft", "base", "other"]  # the report's rows: as written


@pytest.mark.parametrize(
    ("arms", "key", "message"),
    [
        ({"a": {}, "b": {"from": "nope"}}, "arms.b.from", "'nope' is not an arm"),
        ({"a": {}, "b": {"from": "b"}}, "arms.b.from", "cannot start from or reference itself"),
        (
            {"a": {"from": "b"}, "b": {"from": "a"}},
            "arms.b.from",
            "a cycle of stages: a -> b -> a",
        ),
        (
            {"a": {}, "b": {"train.init_from": "${trial:c}"}},
            "arms.b.train.init_from",
            "'c' is not an arm",
        ),
        (
            {"a": {}, "b": {"from": "a", "train.init_from": "x"}},
            "arms.b.from",
            "sets where to start twice",
        ),
        ({"a": {}, "b": {"from": 3}}, "arms.b.from", "expected the name of an arm"),
    ],
)
def test_bad_stages_name_the_sweep_file_and_key(tmp_path, arms, key, message):
    path = write_sweep(tmp_path, arms=arms)
    with pytest.raises(ConfigError, match=message) as e:
        load_sweep(path)
    assert e.value.source == str(path) and e.value.key == key
    assert isinstance(e.value, ValueError)


def test_ladder_references_mean_the_same_rung(tmp_path):
    arms = {"base": {}, "ft": {"from": "base", "train.steps": 2}}
    ladder = {"d32": {"model.dim": 32}, "d48": {"model.dim": 48}}
    sweep = load_sweep(write_sweep(tmp_path, arms=arms, baseline="base", seeds=(0,), ladder=ladder))
    t = {x.arm: x for x in sweep.trials}
    for rung in ("d32", "d48"):
        assert t[f"ft@{rung}"].parent == t[f"base@{rung}"].trial_id
        assert t[f"ft@{rung}"].cfg.model.dim == t[f"base@{rung}"].cfg.model.dim
