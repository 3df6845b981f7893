"""Statistics over seeds: mean with a Student-t confidence interval, paired t-test by seed.

The test and the interval of a comparison are computed from the same per-seed differences (of
validation loss), so the interval excludes zero exactly when the test is significant.
Non-finite and missing values are not results: a seed counts only where both arms have one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95  # two-sided level of every interval in the report
ALPHA = 1 - CONFIDENCE  # p-values at or above this are marked not significant


def finite(value: float | None) -> bool:
    """Whether `value` is a result: present and finite."""
    return value is not None and math.isfinite(float(value))


def t_half_width(sd: float, n: int, level: float = CONFIDENCE) -> float:
    """Half-width of the two-sided t-interval of a mean of `n` values with sample sd `sd`."""
    from scipy import stats

    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def _sd(xs: Sequence[float], mean: float) -> float:
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


def mean_ci(values: Sequence[float | None], level: float = CONFIDENCE) -> tuple[float, float]:
    """Mean of the finite values and its t-interval half-width (nan with fewer than 2)."""
    xs = [float(v) for v in values if finite(v)]
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    return mean, t_half_width(_sd(xs, mean), len(xs), level)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of an arm against the baseline over their shared seeds."""

    seeds: tuple[int, ...]  # seeds where both have a finite value, sorted
    diff: float  # mean of (arm - baseline); nan without shared seeds
    half: float  # half-width of the t-interval of `diff`; nan below 2 seeds
    p: float  # two-sided paired t-test p-value; nan below 2 seeds
    sd: float = math.nan  # sample SD of the per-seed differences; nan below 2 seeds

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def significant(self) -> bool:
        return significant(self.p)


def shared_seeds(*arms: Mapping[int, float | None]) -> tuple[int, ...]:
    """Seeds with a finite value in every mapping, sorted."""
    first, *rest = arms
    return tuple(
        sorted(s for s, v in first.items() if finite(v) and all(finite(r.get(s)) for r in rest))
    )


def paired(arm: Mapping[int, float | None], baseline: Mapping[int, float | None]) -> Paired:
    """Mean difference, its interval and the paired t-test, over the seeds both finished.

    With every difference equal (zero variance) the interval has width 0 and p is 1.0 for a
    zero difference and 0.0 otherwise (a constant offset is certain), matching the interval.
    """
    from scipy import stats

    seeds = shared_seeds(arm, baseline)
    diffs = [float(arm[s]) - float(baseline[s]) for s in seeds]
    if not diffs:
        return Paired(seeds, math.nan, math.nan, math.nan)
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return Paired(seeds, mean, math.nan, math.nan)
    if max(diffs) == min(diffs):
        return Paired(seeds, mean, 0.0, 1.0 if mean == 0 else 0.0, 0.0)
    p = float(stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
    sd = _sd(diffs, mean)
    return Paired(seeds, mean, t_half_width(sd, len(diffs)), p, sd)


def significant(p: float) -> bool:
    """Whether a p-value is below the report's significance level."""
    return math.isfinite(p) and p < ALPHA


POWER = 0.8  # power at which the report states the minimum detectable effect
MAX_SEEDS = 100_000  # seeds_needed gives up (returns None) beyond this


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (non-finite ones are left out and stay nan).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)), so
    rejecting where the adjusted p is below alpha controls the family-wise error at alpha.
    """
    idx = sorted((i for i, p in enumerate(pvalues) if math.isfinite(p)), key=lambda i: pvalues[i])
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - rank) * pvalues[i]))
        out[i] = running
    return out


def t_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Exact power of the two-sided paired t-test on `n` seeds at true mean difference `effect`.

    P(|T'| > t_{1-alpha/2, n-1}) with T' noncentral t, n - 1 degrees of freedom and
    noncentrality effect * sqrt(n) / sd; by integration over the chi-square of the SD where
    scipy's noncentral t gives no value (one degree of freedom, large noncentrality).
    """
    from scipy import integrate, stats

    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(effect) * math.sqrt(n) / sd
    p = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if math.isfinite(p):
        return p

    def given_v(v: float) -> float:
        s = crit * math.sqrt(v / df)
        return float(stats.norm.sf(s - nc) + stats.norm.cdf(-s - nc)) * stats.chi2.pdf(v, df)

    return float(integrate.quad(given_v, 0, math.inf)[0])


def mde(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference a two-sided paired t-test on `n` seeds detects with `power`.

    Solves t_power(MDE) = power exactly (noncentral t), starting from the textbook
    MDE ~ (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n), which understates it at few
    seeds (its power is 0.73 at n = 2, 0.79 at n = 5); `sd` is the SD of the per-seed
    differences. nan below 2 seeds.
    """
    from scipy import optimize, stats

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    df = n - 1
    approx = float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n)
    hi = 2 * approx
    while t_power(hi, sd, n, alpha) < power:
        hi *= 2
    gap = lambda d: t_power(d, sd, n, alpha) - power  # noqa: E731
    return float(optimize.brentq(gap, approx / 2, hi, xtol=1e-10 * sd))


def seeds_needed(
    effect: float, sd: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Fewest seeds (>= 2) whose `mde` is at most |effect|; None if over MAX_SEEDS or undefined.

    The normal-approximation count ((z_{1-alpha/2} + z_power) sd / effect)^2 is a lower bound
    (t quantiles exceed normal ones); the exact count is searched upwards from it.
    """
    from scipy import stats

    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0:
        return None
    if sd == 0:
        return 2
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    lo = max(1, math.ceil((z * sd / abs(effect)) ** 2) - 1)  # lo seeds do not suffice
    if lo >= MAX_SEEDS or mde(sd, MAX_SEEDS, alpha, power) > abs(effect):
        return None
    hi = max(2, lo + 1)
    while mde(sd, hi, alpha, power) > abs(effect):  # gallop: hi seeds suffice afterwards
        lo, hi = hi, min(MAX_SEEDS, hi + max(1, hi - lo) * 2)
    while hi - lo > 1:  # mde falls with n: the smallest n in (lo, hi] that suffices
        mid = (lo + hi) // 2
        if mde(sd, mid, alpha, power) <= abs(effect):
            hi = mid
        else:
            lo = mid
    return hi


def tost(diffs: Sequence[float], margin: float) -> float:
    """Two-one-sided-tests p-value that the mean of `diffs` lies within (-margin, +margin).

    p = max(P(T >= (mean + margin)/se), P(T <= (mean - margin)/se)) with T ~ t_{n-1}: below
    alpha exactly when the (1 - 2 alpha) t-interval lies inside the margin. nan below 2 values.
    """
    from scipy import stats

    n = len(diffs)
    if n < 2:
        return math.nan
    mean = sum(diffs) / n
    se = _sd(diffs, mean) / math.sqrt(n)
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = float(stats.t.sf((mean + margin) / se, n - 1))
    upper = float(stats.t.cdf((mean - margin) / se, n - 1))
    return max(lower, upper)
