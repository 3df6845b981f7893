"""Power-law fits of loss in compute: exact recovery, noisy intervals, exponent differences."""

from __future__ import annotations

import math
import random

import pytest

from ablate.report.ladder import sentence
from ablate.report.powerlaw import exponent_gap, fit

COMPUTES = (1e12, 3e12, 1e13)


def _law(a: float, b: float, noise: float = 0.0, seeds: int = 3, rng=None):
    rng = rng or random.Random(0)
    return [(c, a * c**-b * math.exp(rng.gauss(0, noise))) for c in COMPUTES for _ in range(seeds)]


def test_exact_power_law_is_recovered():
    f = fit(_law(40.0, 0.07, seeds=1))
    assert f.a == pytest.approx(40.0, rel=1e-9)
    assert f.b == pytest.approx(0.07, rel=1e-9)
    assert f.se_b == pytest.approx(0.0, abs=1e-9) and f.n == 3
    assert f.loss(2e12) == pytest.approx(40.0 * 2e12**-0.07, rel=1e-9)


def test_two_points_fit_without_an_interval():
    f = fit([(1e12, 3.0), (1e13, 2.5)])
    assert f.b == pytest.approx(math.log(3.0 / 2.5) / math.log(10))
    assert math.isnan(f.se_b) and math.isnan(f.half_b)


def test_noisy_interval_matches_the_textbook_standard_error():
    pts = _law(40.0, 0.07, noise=0.01, rng=random.Random(1))
    f = fit(pts)
    xs = [math.log(c) for c, _ in pts]
    mx = sum(xs) / len(xs)
    resid = [math.log(v) - math.log(f.a) + f.b * x for x, (_, v) in zip(xs, pts)]
    se = math.sqrt(sum(r * r for r in resid) / (len(pts) - 2) / sum((x - mx) ** 2 for x in xs))
    assert f.se_b == pytest.approx(se, rel=1e-9)
    assert f.half_b == pytest.approx(2.3646243 * se, rel=1e-6)  # t(0.975, 7 df)
    assert abs(f.b - 0.07) < 4 * f.se_b  # close to the truth (coverage: the next test)


def test_the_interval_covers_the_true_exponent_about_95_percent_of_the_time():
    rng = random.Random(2)
    hits = 0
    for _ in range(400):
        f = fit(_law(40.0, 0.07, noise=0.02, rng=rng))
        hits += abs(f.b - 0.07) < f.half_b
    assert 0.91 < hits / 400 < 0.99


def test_rejects_points_at_one_compute_or_non_positive():
    with pytest.raises(ValueError, match="two computes"):
        fit([(1e12, 3.0), (1e12, 2.9)])
    with pytest.raises(ValueError, match="positive"):
        fit([(1e12, 3.0), (1e13, 0.0)])


def test_exponent_gap_resolved_when_the_laws_differ():
    arm, base = fit(_law(40.0, 0.09, 0.002)), fit(_law(40.0, 0.06, 0.002, rng=random.Random(3)))
    g = exponent_gap(arm, base)
    assert g.diff == pytest.approx(0.03, abs=0.005) and g.resolved and g.df == 14
    text = sentence("mla", "mha", arm, base, 1e13)
    assert text.startswith("mla: fitted loss") and "below mha's at 1e+13 FLOPs" in text
    assert "its advantage grows with compute, and the interval excludes 0" in text


def test_exponent_gap_unresolved_says_what_would_resolve_it():
    arm = fit(_law(39.0, 0.07, 0.02, rng=random.Random(4)))
    base = fit(_law(40.0, 0.07, 0.02, rng=random.Random(5)))
    g = exponent_gap(arm, base)
    assert not g.resolved and abs(g.diff) < g.half
    text = sentence("mla", "mha", arm, base, 1e13)
    assert "the interval contains 0" in text and "more seeds" in text and "more scales" in text


def test_worse_arm_that_falls_faster_closes_its_deficit():
    arm, base = fit(_law(44.0, 0.072, seeds=1)), fit(_law(40.0, 0.07, seeds=1))
    text = sentence("x", "base", arm, base, 1e13)
    assert "above base's" in text and "its deficit shrinks with compute" in text
    assert "interval excludes 0" in text  # exact laws: zero-width interval


def test_too_few_points_give_no_interval():
    arm, base = fit([(1e12, 3.0), (1e13, 2.5)]), fit([(1e12, 3.1), (1e13, 2.7)])
    assert math.isnan(exponent_gap(arm, base).half)
    assert "no interval" in sentence("x", "b", arm, base, 1e13)
