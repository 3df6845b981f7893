"""One-line verdicts per arm against the baseline: better, worse, equivalent or inconclusive.

Each arm's paired t-test on the sweep's verdict metric (`verdict:`, default validation loss,
lower is better) is Holm-corrected over the arms compared with the one baseline. An arm whose
corrected p is below alpha is better or worse (by the metric's goal); any other is inconclusive,
and the verdict states the smallest effect these seeds could have
detected (`stats.mde`, 80% power, two-sided alpha) and how many seeds the observed difference
would need. Where the sweep states an equivalence margin (`equivalence: {margin, relative}`),
a two-one-sided test (TOST, Holm-corrected over the arms too) can conclude "equivalent".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ablate.report import stats


@dataclass(frozen=True)
class Verdict:
    """What one arm's comparison with the baseline can and cannot show."""

    word: str  # better | worse | equivalent | inconclusive | no test
    line: str  # the one-line verdict as printed in the report
    p_holm: float  # Holm-adjusted paired t-test p-value (nan without a test)
    p_tost: float  # Holm-adjusted TOST p-value (nan without a margin or a test)
    mde: float  # minimum detectable difference in the verdict metric at these seeds (nan below 2)


@dataclass(frozen=True)
class Metric:
    """What the verdicts compare: a summary key, its label and which way is better."""

    key: str = "val_loss"
    goal: str = "min"  # min | max
    name: str = "val loss"  # as printed in a verdict line

    @classmethod
    def of(cls, spec: Mapping | None) -> Metric:
        """From the sweep's `verdict:` record (`ablate.study.claims.verdict`); None: val loss."""
        if not spec or spec.get("metric", "val_loss") == "val_loss":
            return cls(goal=(spec or {}).get("goal", "min"))
        return cls(spec["metric"], spec["goal"], spec["metric"])


def _relative(
    arm: Mapping[int, float | None], base: Mapping[int, float | None], seeds: tuple[int, ...]
) -> list[float]:
    return [float(arm[s]) / float(base[s]) - 1 for s in seeds]


def _tost_p(cmp: stats.Paired, arm: Mapping, base: Mapping, equivalence: Mapping) -> float:
    """TOST p of one arm; a relative margin is tested on per-seed arm / baseline - 1."""
    if not equivalence or cmp.n < 2:
        return math.nan
    if equivalence.get("relative"):
        diffs = _relative(arm, base, cmp.seeds)
    else:
        diffs = [float(arm[s]) - float(base[s]) for s in cmp.seeds]
    return stats.tost(diffs, float(equivalence["margin"]))


def _margin_text(equivalence: Mapping, m: Metric) -> str:
    margin = float(equivalence["margin"])
    return f"±{100 * margin:.3g} %" if equivalence.get("relative") else f"±{margin:.3g} {m.name}"


def _line(
    cmp: stats.Paired, p_holm: float, p_tost: float, equivalence: Mapping, m: Metric
) -> Verdict:
    n = cmp.n
    size = stats.mde(cmp.sd, n)
    if n < 2 or not math.isfinite(p_holm):
        text = f"no test: {n} seed(s) where both have a {m.name}"
        return Verdict("no test", text, p_holm, p_tost, size)
    if p_holm < stats.ALPHA:
        word = "better" if (cmp.diff < 0) == (m.goal == "min") else "worse"
        text = f"{word}: {m.name} {cmp.diff:+.4g} (Holm p={p_holm:.3g}, {n} seeds)"
        return Verdict(word, text, p_holm, p_tost, size)
    if math.isfinite(p_tost) and p_tost < stats.ALPHA:
        margin = _margin_text(equivalence, m)
        text = f"equivalent within {margin} (TOST Holm p={p_tost:.3g}, {n} seeds)"
        return Verdict("equivalent", text, p_holm, p_tost, size)
    if cmp.sd == 0 and cmp.diff == 0:
        text = f"inconclusive: the same {m.name} as the baseline on all {n} seeds"
        return Verdict("inconclusive", text, p_holm, p_tost, size)
    need = stats.seeds_needed(cmp.diff, cmp.sd)
    if cmp.diff == 0:
        need_text = "no count (the observed difference is 0)"
    else:
        need_text = f"{need} seeds" if need is not None else f"more than {stats.MAX_SEEDS} seeds"
    text = (
        f"inconclusive (Holm p={p_holm:.3g}): {n} seeds detect |Δ| ≥ {size:.3g} at 80% power; "
        f"the observed {cmp.diff:+.3g} would need {need_text}"
    )
    if math.isfinite(p_tost):
        margin = _margin_text(equivalence, m)
        text += f"; not shown equivalent within {margin} (TOST p={p_tost:.3g})"
    return Verdict("inconclusive", text, p_holm, p_tost, size)


def baselines(meta: Mapping, arms: list[str]) -> dict[str, str]:
    """Each compared arm -> the arm it is compared with: the sweep's baseline, or in a ladder
    sweep (`report.ladder`, `ablate.study.ladder`) the baseline at the arm's own rung."""
    ladder = (meta.get("report") or {}).get("ladder")
    if not ladder:
        return {a: meta["baseline"] for a in arms if a != meta["baseline"]}
    cells = {a: tuple(ladder["cells"][a]) for a in arms if a in ladder["cells"]}
    named = {cell: a for a, cell in cells.items()}
    out = {}
    for a, (arm, rung) in cells.items():
        if arm != ladder["baseline"] and (ladder["baseline"], rung) in named:
            out[a] = named[(ladder["baseline"], rung)]
    return out


def verdicts(
    comparisons: Mapping[str, stats.Paired],
    loss: Mapping[str, Mapping[int, float | None]],
    baseline: str | Mapping[str, str],
    equivalence: Mapping | None = None,
    metric: Metric | None = None,
) -> dict[str, Verdict]:
    """Verdict per compared arm; `loss` maps arm -> seed -> the verdict metric (baselines
    included), by default val loss.

    `baseline`: the one baseline arm, or each compared arm's own (`baselines`).
    """
    m = metric or Metric()
    arms = list(comparisons)
    base_of = {a: baseline for a in arms} if isinstance(baseline, str) else baseline
    eq = equivalence or {}
    p_holm = stats.holm([comparisons[a].p for a in arms])
    tosts = [_tost_p(comparisons[a], loss[a], loss[base_of[a]], eq) for a in arms]
    p_tost = stats.holm(tosts)
    return {a: _line(comparisons[a], p_holm[i], p_tost[i], eq, m) for i, a in enumerate(arms)}
