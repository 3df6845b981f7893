"""Power laws of validation loss in training compute, L = a * C^(-b), and their differences.

Fitted by least squares on (ln C, ln L) over every seed's point (ln L = ln a - b ln C, so the
errors are relative). The exponent's uncertainty is the slope's standard error from the
residuals, with a two-sided Student-t interval on n - 2 degrees of freedom; seeds enter as
repeated points at each compute, so the residuals carry the seed-to-seed spread. The difference
of two arms' exponents comes from one least-squares fit of both arms' points with an intercept
and a slope each (an interaction term): the same slopes as two separate fits, the standard
error from the pooled residual variance on n_1 + n_2 - 4 degrees of freedom.

No irreducible term L = E + a C^-b: over a few scales its three parameters are barely
identified (three scales leave no residual at all), so the fit is a local power law over the
measured range, read as a slope in compute, not an extrapolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ablate.report.stats import CONFIDENCE

Points = Sequence[tuple[float, float]]  # (training FLOPs C, validation loss L) per trial


@dataclass(frozen=True)
class PowerLaw:
    """L = a * C^(-b) fitted to `n` points."""

    a: float
    b: float
    se_b: float  # standard error of b; nan below 3 points
    half_b: float  # half-width of b's t-interval at CONFIDENCE; nan below 3 points
    n: int
    ssr: float  # sum of squared residuals of ln L
    sxx: float  # sum of squared deviations of ln C

    def loss(self, c: float) -> float:
        """The fitted loss at compute `c`."""
        return self.a * c ** (-self.b)


@dataclass(frozen=True)
class ExponentGap:
    """An arm's exponent minus the baseline's, with its t-interval half-width."""

    diff: float  # b_arm - b_baseline: > 0 when the arm's loss falls faster with compute
    half: float  # nan below 5 points in all
    df: int

    @property
    def resolved(self) -> bool:
        """Whether the interval of the difference excludes 0."""
        return math.isfinite(self.half) and abs(self.diff) > self.half


def _t(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def fit(points: Points) -> PowerLaw:
    """Least-squares power law through `points` (positive C and L, two distinct C at least)."""
    if any(not (c > 0 and v > 0) for c, v in points) or len({c for c, _ in points}) < 2:
        raise ValueError(f"a power law needs positive points at two computes or more: {points}")
    pts = [(math.log(c), math.log(v)) for c, v in points]
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    ssr = sum((y - my - slope * (x - mx)) ** 2 for x, y in pts)
    se = math.sqrt(ssr / (n - 2) / sxx) if n > 2 else math.nan
    half = _t(n - 2) * se if n > 2 else math.nan
    return PowerLaw(math.exp(my - slope * mx), -slope, se, half, n, ssr, sxx)


def exponent_gap(arm: PowerLaw, baseline: PowerLaw) -> ExponentGap:
    """b_arm - b_baseline and its interval from the pooled residual variance."""
    df = arm.n + baseline.n - 4
    diff = arm.b - baseline.b
    if df < 1:
        return ExponentGap(diff, math.nan, df)
    var = (arm.ssr + baseline.ssr) / df
    return ExponentGap(diff, _t(df) * math.sqrt(var * (1 / arm.sxx + 1 / baseline.sxx)), df)
