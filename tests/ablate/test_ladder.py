"""Ladder sweeps: arms x rungs x seeds, identity, errors naming the sweep file and key."""

from __future__ import annotations

import pytest

from ablate.core.config import ConfigError
from ablate.report.verdicts import baselines
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep
from tests.conftest import REPO

ARMS = {"a": {}, "b": {"model.ffn.hidden_dim": 96}}
RUNGS = {"w32": {}, "w64": {"scale.width": 2}, "w96": {"model.dim": 96}}


def test_arms_times_rungs_times_seeds(tmp_path):
    s = load_sweep(write_sweep(tmp_path, arms=ARMS, ladder=RUNGS))
    names = ["a@w32", "b@w32", "a@w64", "b@w64", "a@w96", "b@w96"]
    assert list(s.arms) == names  # rung by rung
    assert [t.arm for t in s.trials] == [n for n in names for _ in (0, 1)]
    assert s.baseline == "a@w32"
    dims = {t.arm: (t.cfg.model.dim, t.cfg.model.num_heads, t.cfg.model.ffn) for t in s.trials}
    assert dims["a@w32"][:2] == (32, 4) and dims["a@w64"][:2] == (64, 8)
    assert dims["b@w64"][2].hidden_dim == 192  # the scale rule scales the arm's own value
    assert dims["a@w96"][:2] == (96, 4)
    assert s.arms["b@w96"] == {"model.ffn.hidden_dim": 96, "model.dim": 96}
    ladder = s.report["ladder"]
    assert ladder["rungs"] == ["w32", "w64", "w96"] and ladder["arms"] == ["a", "b"]
    assert ladder["cells"]["b@w64"] == ["b", "w64"]
    assert len({t.trial_id for t in s.trials}) == len(s.trials)


def test_a_rung_without_overrides_keeps_the_plain_sweeps_trial_ids(tmp_path):
    plain = load_sweep(write_sweep(tmp_path, name="p", arms=ARMS))
    ladder = load_sweep(write_sweep(tmp_path, arms=ARMS, ladder=RUNGS))
    ids = {(t.arm, t.seed): t.trial_id for t in plain.trials}
    for t in ladder.trials:
        if t.arm.endswith("@w32"):
            assert t.trial_id == ids[(t.arm.split("@")[0], t.seed)]
        else:
            assert t.trial_id not in ids.values()
    assert "ladder" not in plain.report


def test_each_arm_is_compared_with_the_baseline_at_its_rung(tmp_path):
    s = load_sweep(write_sweep(tmp_path, arms=ARMS, ladder=RUNGS))
    meta = {"baseline": s.baseline, "report": s.report}
    assert baselines(meta, list(s.arms)) == {"b@w32": "a@w32", "b@w64": "a@w64", "b@w96": "a@w96"}
    plain = {"baseline": "a", "report": {}}
    assert baselines(plain, ["a", "b", "c"]) == {"b": "a", "c": "a"}


@pytest.mark.parametrize(
    ("ladder", "key", "text"),
    [
        ({"w32": {}}, "ladder", "at least 2 rung"),
        (["w32", "w64"], "ladder", "mapping"),
        ({"w32": {}, "w@64": {}}, "ladder.w@64", "rung name"),
        ({"w32": {}, "w64": 2}, "ladder.w64", "expected a mapping"),
        ({"w32": {}, "w64": {"model.dimm": 64}}, "ladder.w64.model.dimm", "did you mean: dim"),
        ({"w32": {}, "w64": {"scale.width": -1}}, "ladder.w64.scale.width", "positive"),
        (
            {"w32": {}, "w64": {"model.ffn": {"hidden_dim": 8}}},
            "ladder.w64.model.ffn",
            "arm 'b' sets model.ffn.hidden_dim too",
        ),
    ],
)
def test_ladder_errors_name_file_and_key(tmp_path, ladder, key, text):
    path = write_sweep(tmp_path, arms=ARMS, ladder=ladder)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert (info.value.source, info.value.key) == (str(path), key)
    assert text in str(info.value)


def test_ladder_baseline_must_be_an_arm(tmp_path):
    path = write_sweep(tmp_path, arms=ARMS, ladder=RUNGS, baseline="c")
    with pytest.raises(ConfigError, match="'c' is not an arm") as info:
        load_sweep(path)
    assert info.value.key == "baseline"


def test_shipped_ladder_keeps_ratios_at_every_width():
    s = load_sweep(REPO / "sweeps" / "ladder_mla_vs_mha.yaml")
    assert s.report["ladder"]["rungs"] == ["w64", "w128", "w192"] and len(s.seeds) >= 2
    for t in s.trials:
        m = t.cfg.model
        assert m.dim // m.num_heads == 32  # head dim kept
        if m.attention.__class__.__name__ == "MLA":
            assert m.attention.kv_lora_rank * 2 == m.dim  # d_c / D = 1/2
            assert m.attention.qk_rope_head_dim * 2 == m.attention.qk_nope_head_dim
    assert sorted({t.cfg.model.dim for t in s.trials}) == [64, 128, 192]
