"""Verdict statistics against scipy and hand computation: Holm, the minimum detectable effect,
seeds needed, TOST, the per-arm verdict lines and the sweep's `equivalence` / `paper` keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from ablate.core.config import ConfigError
from ablate.report import stats
from ablate.report.table import ablation_table
from ablate.report.verdicts import verdicts
from ablate.study.claims import equivalence, paper

P = st.one_of(st.floats(0, 1), st.just(math.nan))


def _holm_by_hand(ps: list[float]) -> list[float]:
    """Reject sequentially: the j-th smallest p is compared with alpha / (m - j)."""
    finite = sorted((p, i) for i, p in enumerate(ps) if math.isfinite(p))
    m, out, running = len(finite), [math.nan] * len(ps), 0.0
    for j, (p, i) in enumerate(finite):
        running = max(running, min(1.0, p * (m - j)))
        out[i] = running
    return out


@given(st.lists(P, max_size=8))
@settings(max_examples=200, deadline=None)
def test_holm_is_the_step_down_adjustment(ps):
    got = stats.holm(ps)
    want = _holm_by_hand(ps)
    assert all(
        (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b) for a, b in zip(got, want)
    )
    # every adjusted p is at least the raw one, and rejection at alpha matches the sequential rule
    assert all(g >= p - 1e-15 for g, p in zip(got, ps) if math.isfinite(p))


def test_holm_known_values():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, math.nan]) == [0.5, pytest.approx(math.nan, nan_ok=True)]


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_mde_has_exactly_80_percent_power_by_the_noncentral_t(n):
    sd = 0.02
    got = stats.mde(sd, n)
    crit = sps.t.ppf(0.975, n - 1)
    nc = got / (sd / math.sqrt(n))
    power = sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc)
    if n > 2:  # scipy's noncentral t has no value there at one degree of freedom
        assert power == pytest.approx(0.8, abs=1e-6)
    assert stats.t_power(got, sd, n) == pytest.approx(0.8, abs=1e-6)
    # the textbook approximation understates it at few seeds, and converges to it
    approx = (sps.t.ppf(0.975, n - 1) + sps.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)
    assert got == pytest.approx(approx, rel=0.05 if n >= 10 else 1.0)
    assert n >= 30 or got > approx


def test_t_power_integration_agrees_with_simulation_at_two_seeds():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 0.1, size=(200_000, 2))
    p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    assert stats.t_power(0.3, 0.1, 2) == pytest.approx(float(np.mean(p < 0.05)), abs=0.005)


def test_mde_undefined_below_two_seeds():
    assert math.isnan(stats.mde(0.1, 1)) and math.isnan(stats.mde(math.nan, 3))


@given(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0))
@settings(max_examples=60, deadline=None)
def test_seeds_needed_is_the_fewest_seeds_that_detect_the_effect(effect, sd):
    n = stats.seeds_needed(effect, sd)
    if n is None:
        assert stats.mde(sd, stats.MAX_SEEDS) > effect
        return
    assert stats.mde(sd, n) <= effect
    assert n == 2 or stats.mde(sd, n - 1) > effect


def test_seeds_needed_edge_cases():
    assert stats.seeds_needed(0.0, 0.1) is None and stats.seeds_needed(0.1, 0.0) == 2
    assert stats.seeds_needed(-0.05, 0.05) == stats.seeds_needed(0.05, 0.05)


def _tost_by_hand(diffs: list[float], margin: float) -> float:
    n, mean = len(diffs), float(np.mean(diffs))
    se = float(np.std(diffs, ddof=1)) / math.sqrt(n)
    p_low = 1 - sps.t.cdf((mean + margin) / se, n - 1)
    p_high = sps.t.cdf((mean - margin) / se, n - 1)
    return max(p_low, p_high)


@given(st.lists(st.floats(-0.05, 0.05), min_size=2, max_size=8), st.floats(1e-3, 0.05))
@settings(max_examples=200, deadline=None)
def test_tost_matches_hand_computation_and_the_90_percent_interval(diffs, margin):
    if max(diffs) - min(diffs) < 1e-9:
        return
    p = stats.tost(diffs, margin)
    assert p == pytest.approx(_tost_by_hand(diffs, margin), abs=1e-9)
    mean, half90 = stats.mean_ci(diffs, level=0.90)
    inside = -margin < mean - half90 and mean + half90 < margin
    if abs(abs(mean) + half90 - margin) > 1e-9:  # away from the boundary
        assert (p < 0.05) == inside


def _trials(values: dict[str, list[float]]) -> list[dict]:
    return [
        {
            "arm": arm,
            "seed": s,
            "state": "done",
            "trial_id": f"{arm}{s}",
            "overrides": {},
            "config": {"model": {"attention": {"name": arm}}, "train": {"seed": s}},
            "summary": {"val_loss": v},
            "metrics": {},
            "attempts": 1,
            "path": "",
        }
        for arm, vs in values.items()
        for s, v in enumerate(vs)
    ]


def _meta(arms, report=None):
    return {"arms": arms, "baseline": arms[0], "report": report or {}}


def test_verdict_lines_better_worse_inconclusive():
    base = [3.00, 3.10, 2.95, 3.05, 3.02]
    values = {
        "base": base,
        "good": [b - 0.2 + 0.001 * i for i, b in enumerate(base)],
        "bad": [b + 0.2 - 0.001 * i for i, b in enumerate(base)],
        "same": [b + (0.01 if i % 2 else -0.012) for i, b in enumerate(base)],
    }
    rows = {r["arm"]: r for r in ablation_table(_meta(list(values)), _trials(values))["rows"]}
    assert rows["good"]["verdict_word"] == "better" and "Holm p=" in rows["good"]["verdict"]
    assert rows["bad"]["verdict_word"] == "worse"
    line = rows["same"]["verdict"]
    assert rows["same"]["verdict_word"] == "inconclusive"
    diffs = [v - b for v, b in zip(values["same"], base)]
    sd = float(np.std(diffs, ddof=1))
    assert f"detect |Δ| ≥ {stats.mde(sd, 5):.3g}" in line
    assert f"would need {stats.seeds_needed(float(np.mean(diffs)), sd)} seeds" in line
    assert rows["base"]["verdict"] == "baseline"


def test_holm_correction_changes_a_borderline_verdict():
    cmp = stats.Paired((0, 1, 2), -0.1, 0.05, 0.03, 0.02)
    other = stats.Paired((0, 1, 2), 0.0, 0.05, 0.9, 0.02)
    loss = {"b": {}, "x": {}, "y": {}}
    alone = verdicts({"x": cmp}, loss, "b")
    both = verdicts({"x": cmp, "y": other}, loss, "b")
    assert alone["x"].word == "better" and both["x"].word == "inconclusive"
    assert both["x"].p_holm == pytest.approx(0.06)


def test_equivalence_verdict_uses_the_relative_margin():
    base = [3.0, 3.1, 2.9, 3.05]
    close = [b * (1 + d) for b, d in zip(base, (0.0005, -0.0004, 0.0002, -0.0001))]
    values = {"bf16": base, "fp8": close}
    eq = {"margin": 0.0025, "relative": True}
    rows = ablation_table(_meta(list(values), {"equivalence": eq}), _trials(values))["rows"]
    assert rows[1]["verdict_word"] == "equivalent" and "±0.25 %" in rows[1]["verdict"]
    rel = [c / b - 1 for c, b in zip(close, base)]
    got = verdicts(
        {"fp8": stats.paired(dict(enumerate(close)), dict(enumerate(base)))},
        {"bf16": dict(enumerate(base)), "fp8": dict(enumerate(close))},
        "bf16",
        eq,
    )
    assert got["fp8"].p_tost == pytest.approx(_tost_by_hand(rel, 0.0025))
    tight = ablation_table(
        _meta(list(values), {"equivalence": {"margin": 1e-5, "relative": True}}), _trials(values)
    )["rows"]
    assert (
        tight[1]["verdict_word"] == "inconclusive" and "not shown equivalent" in tight[1]["verdict"]
    )


def test_no_test_below_two_seeds():
    values = {"a": [3.0], "b": [2.9]}
    rows = ablation_table(_meta(["a", "b"]), _trials(values))["rows"]
    assert rows[1]["verdict_word"] == "no test"


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"equivalence": {"margin": 0}}, "equivalence.margin"),
        ({"equivalence": {"margin": True}}, "equivalence.margin"),
        ({"equivalence": {"margin": 1.5, "relative": True}}, "equivalence.margin"),
        ({"equivalence": {"margin": 0.1, "relative": "yes"}}, "equivalence.relative"),
        ({"equivalence": {"margn": 0.1}}, "equivalence.margn"),
    ],
)
def test_equivalence_key_is_validated(spec, key):
    with pytest.raises(ConfigError) as e:
        equivalence(spec, "s.yaml")
    assert e.value.key == key


def test_equivalence_and_paper_keys_accept_good_values():
    assert equivalence({"equivalence": {"margin": 0.0025, "relative": True}}, "s") == {
        "margin": 0.0025,
        "relative": True,
    }
    assert equivalence({}, "s") == {}
    entry = {"value": 1.2, "source": "Paper, Table 1"}
    assert paper({"paper": {"a": entry}}, "s", {"a": {}}) == {"a": entry}
    for bad, key in (({"b": entry}, "paper.b"), ({"a": {"value": 1}}, "paper.a")):
        with pytest.raises(ConfigError) as e:
            paper({"paper": bad}, "s", {"a": {}})
        assert e.value.key == key


def test_shipped_fp8_sweep_states_its_margin():
    from ablate.study.sweep import load_sweep

    sweep = load_sweep("sweeps/bf16_vs_fp8.yaml")
    assert sweep.equivalence == {"margin": 0.0025, "relative": True}
    assert sweep.report["equivalence"] == sweep.equivalence


def test_identical_arms_say_so():
    values = {"a": [3.0, 3.1, 3.2], "b": [3.0, 3.1, 3.2]}
    rows = ablation_table(_meta(["a", "b"]), _trials(values))["rows"]
    assert rows[1]["verdict"] == "inconclusive: the same val loss as the baseline on all 3 seeds"


def test_paper_column_shows_value_and_source():
    values = {"mha": [3.0, 3.1], "mla": [2.9, 3.0]}
    paper = {"mla": {"value": "-0.1 loss", "source": "Some paper, Table 1"}}
    table = ablation_table(_meta(["mha", "mla"], {"paper": paper}), _trials(values))
    assert table["show_paper"] and table["rows"][1]["paper"] == "-0.1 loss (Some paper, Table 1)"
    assert table["rows"][0]["paper"] == ""
    assert not ablation_table(_meta(["mha", "mla"]), _trials(values))["show_paper"]


def _post_trials(values: dict[str, list[float]]) -> list[dict]:
    """Post-training-only trials: pass@1 under `metrics`, no val_loss (train.steps 0)."""
    trials = _trials(values)
    for t in trials:
        t["summary"] = {"metrics": {"post_val_pass1": t["summary"]["val_loss"]}}
    return trials


def test_verdict_metric_with_goal_max_turns_the_direction():
    base = [0.10, 0.20, 0.15, 0.12]
    values = {
        "rl": base,
        "distill": [b + 0.3 + 0.01 * i for i, b in enumerate(base)],
        "worse": [b - 0.05 - 0.001 * i for i, b in enumerate(base)],
    }
    report = {"verdict": {"metric": "post_val_pass1", "goal": "max"}}
    table = ablation_table(_meta(list(values), report), _post_trials(values))
    rows = {r["arm"]: r for r in table["rows"]}
    assert rows["distill"]["verdict_word"] == "better"  # higher pass@1, though diff > 0
    assert rows["distill"]["verdict"].startswith("better: post_val_pass1 +0.3")
    assert rows["worse"]["verdict_word"] == "worse"
    assert rows["distill"]["delta"].startswith("+0.3") and rows["distill"]["gap"] == "–"
    assert not table["show_gap"] and table["verdict_label"] != "val loss"
    # without the verdict key the same trials have no val loss: nothing to test
    plain = ablation_table(_meta(list(values)), _post_trials(values))["rows"]
    assert plain[1]["verdict_word"] == "no test" and "val loss" in plain[1]["verdict"]
    assert "no val_loss recorded" in plain[1]["excluded"]


def test_verdict_key_is_validated():
    from ablate.study.claims import verdict

    assert verdict({}, "s") == {"metric": "val_loss", "goal": "min"}
    assert verdict({"verdict": {"metric": "acc", "goal": "max"}}, "s") == {
        "metric": "acc",
        "goal": "max",
    }
    for spec, key in (
        ({"metric": "acc"}, "verdict.goal"),  # a metric other than val_loss states its goal
        ({"metric": "acc", "goal": "up"}, "verdict.goal"),
        ({"metric": "", "goal": "max"}, "verdict.metric"),
        ({"metrc": "acc"}, "verdict.metrc"),
    ):
        with pytest.raises(ConfigError) as e:
            verdict({"verdict": spec}, "s.yaml")
        assert e.value.key == key and "s.yaml" in str(e.value)
