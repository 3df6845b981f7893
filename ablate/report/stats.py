"""Statistics over seeds: mean with a Student-t confidence interval, paired t-test by seed."""

from __future__ import annotations

import math
from collections.abc import Sequence

CONFIDENCE = 0.95  # two-sided level of every interval in the report
ALPHA = 1 - CONFIDENCE  # p-values at or above this are marked not significant


def mean_ci(values: Sequence[float], level: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and the half-width of its two-sided t-interval (nan with fewer than 2 values)."""
    from scipy import stats

    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, float(stats.t.ppf(0.5 + level / 2, len(xs) - 1)) * sd / math.sqrt(len(xs))


def paired_test(arm: dict[int, float], baseline: dict[int, float]) -> tuple[float, float, int]:
    """Mean of (arm - baseline) over the seeds both have, the paired t-test p-value, and n.

    The p-value is nan with fewer than 2 shared seeds, and 1.0 when every difference is equal
    (zero variance: no evidence of a difference beyond a constant offset of exactly zero).
    """
    from scipy import stats

    seeds = sorted(
        s for s in arm if s in baseline and arm[s] is not None and baseline[s] is not None
    )
    diffs = [float(arm[s]) - float(baseline[s]) for s in seeds]
    if not diffs:
        return math.nan, math.nan, 0
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return mean, math.nan, len(diffs)
    if max(diffs) == min(diffs):
        return mean, (1.0 if mean == 0 else 0.0), len(diffs)
    p = float(stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
    return mean, p, len(diffs)


def significant(p: float) -> bool:
    """Whether a p-value is below the report's significance level."""
    return math.isfinite(p) and p < ALPHA
