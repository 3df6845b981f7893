"""Statistics against scipy, property-based: intervals, paired differences and verdicts agree
for random per-seed values with missing and non-finite (diverged) seeds, n = 0 to 6."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from ablate.report import stats
from ablate.report.table import ablation_table

LOSS = st.floats(min_value=0.5, max_value=8.0, allow_nan=False)
# a seed's result: a finite loss, or missing (None), or diverged to a non-finite value
OUTCOME = st.one_of(LOSS, LOSS, LOSS, st.none(), st.sampled_from([math.nan, math.inf]))
SEEDS = st.dictionaries(st.integers(0, 6), OUTCOME, max_size=6)


def _scipy_interval(xs: list[float]) -> tuple[float, float]:
    mean = float(np.mean(xs))
    if len(xs) < 2:
        return mean, math.nan
    if max(xs) == min(xs):  # scipy gives nan for scale 0; the interval has width 0
        return mean, 0.0
    lo, hi = sps.t.interval(stats.CONFIDENCE, len(xs) - 1, loc=mean, scale=sps.sem(xs))
    return mean, (hi - lo) / 2


@given(st.lists(OUTCOME, max_size=6))
@settings(max_examples=150, deadline=None)
def test_mean_ci_is_scipys_t_interval_over_the_finite_values(values):
    xs = [v for v in values if v is not None and math.isfinite(v)]
    mean, half = stats.mean_ci(values)
    if not xs:
        assert math.isnan(mean) and math.isnan(half)
        return
    want_mean, want_half = _scipy_interval(xs)
    assert mean == pytest.approx(want_mean, rel=1e-12)
    if len(xs) < 2:
        assert math.isnan(half)
    else:
        assert half == pytest.approx(want_half, rel=1e-9, abs=1e-12)


@given(SEEDS, SEEDS)
@settings(max_examples=300, deadline=None)
def test_paired_agrees_with_scipy_over_the_seeds_both_finished(arm, base):
    got = stats.paired(arm, base)
    ok = [s for s in sorted(arm) if s in base and all(_finite(d[s]) for d in (arm, base))]
    assert got.seeds == tuple(ok) and got.n == len(ok)
    if not ok:
        assert math.isnan(got.diff) and math.isnan(got.p) and not got.significant
        return
    diffs = [arm[s] - base[s] for s in ok]
    want_mean, want_half = _scipy_interval(diffs)
    assert got.diff == pytest.approx(want_mean, rel=1e-9, abs=1e-12)
    if len(ok) == 1:
        assert math.isnan(got.half) and math.isnan(got.p) and not got.significant
        return
    if max(diffs) == min(diffs):  # zero variance: scipy gives nan; a constant offset is certain
        assert got.half == 0.0 and got.significant == (got.diff != 0)
        return
    want_p = sps.ttest_rel([arm[s] for s in ok], [base[s] for s in ok]).pvalue
    assert got.p == pytest.approx(want_p, rel=1e-6, abs=1e-12)
    assert got.half == pytest.approx(want_half, rel=1e-9, abs=1e-12)
    # the verdict and the interval say the same thing (away from the exact boundary)
    assume(abs(abs(got.diff) - got.half) > 1e-9 * max(got.half, 1e-12))
    assert got.significant == (want_p < stats.ALPHA) == (abs(got.diff) > got.half)


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def _row_trial(arm: str, seed: int, loss: float | None) -> dict:
    state = "done" if loss is not None and not math.isinf(loss) else "diverged"
    return {
        "arm": arm,
        "seed": seed,
        "state": state,
        "metrics": {},
        "overrides": {},
        "config": {"model": {"attention": {"name": arm}}, "train": {"seed": seed}},
        "summary": {"val_loss": loss, "tokens_per_s": 100.0 + seed, "metrics": {}},
    }


@pytest.mark.parametrize("n", [1, 2, 3])
@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_table_row_matches_scipy_for_n_seeds(n, data):
    """n shared seeds plus one seed the arm lost (diverged) and one the baseline lost."""
    base = {s: data.draw(LOSS) for s in range(n)}
    arm = {s: data.draw(LOSS) for s in range(n)}
    base[n], arm[n] = data.draw(LOSS), math.inf  # the arm diverged on seed n
    base[n + 1], arm[n + 1] = math.nan, data.draw(LOSS)  # the baseline's result is NaN
    trials = [_row_trial("a", s, v) for s, v in base.items()]
    trials += [_row_trial("b", s, v) for s, v in arm.items()]
    row = ablation_table({"arms": ["a", "b"], "baseline": "a"}, trials)["rows"][1]
    assert row["used_seeds"] == list(range(n))
    assert row["excluded"] == f"seed {n}: diverged; seed {n + 1}: baseline non-finite val_loss"
    diffs = [arm[s] - base[s] for s in range(n)]
    assert row["delta"].startswith(f"{float(np.mean(diffs)):+.4g}")
    mean, _ = stats.mean_ci([arm[s] for s in range(n)])
    assert row["val_loss"].split(" ")[0] == f"{mean:.4g}"
    loop_tps = f"{np.mean([100.0 + s for s in range(n)]):,.0f}"  # the train loop's record
    assert row["loop_tokens_per_s"].split(" ")[0] == loop_tps
    if n == 1:
        assert row["p"] == "n=1, no test"
    elif max(diffs) != min(diffs):
        p = sps.ttest_rel([arm[s] for s in range(n)], [base[s] for s in range(n)]).pvalue
        assert row["p"] == f"p={p:.3g}" and row["significant"] == (p < stats.ALPHA)
