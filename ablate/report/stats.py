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
        return Paired(seeds, mean, 0.0, 1.0 if mean == 0 else 0.0)
    p = float(stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
    return Paired(seeds, mean, t_half_width(_sd(diffs, mean), len(diffs)), p)


def significant(p: float) -> bool:
    """Whether a p-value is below the report's significance level."""
    return math.isfinite(p) and p < ALPHA
