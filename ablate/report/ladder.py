"""The report's ladder section: validation loss against training compute, one power law per arm.

Only for ladder sweeps (`ladder:` in the sweep, stored as `report.ladder` by
`ablate.study.ladder`). Each finished trial is one point (its summary's `train_flops`, its
validation loss); each arm's points over every rung and seed get a power law
(`ablate.report.powerlaw`), and each arm a sentence against the baseline: whether its gap grows
or shrinks with compute, and whether the interval of the exponent difference resolves that.
"""

from __future__ import annotations

import math
from typing import Any

from ablate.report.powerlaw import ExponentGap, PowerLaw, exponent_gap, fit
from ablate.report.stats import CONFIDENCE
from ablate.report.table import metric, result

COMPUTE_KEY = "train_flops"  # summary.json: forward + backward FLOPs x tokens trained


def ladder_of(meta: dict) -> dict[str, Any]:
    """The stored ladder (rungs, arms, baseline, cells) of a sweep; {} for other sweeps."""
    return (meta.get("report") or {}).get("ladder") or {}


def points(ladder: dict, trials: list[dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """arm -> rung -> (training FLOPs, val loss) of every finished trial that recorded both."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {a: {} for a in ladder["arms"]}
    for t in trials:
        cell = ladder["cells"].get(t["arm"])
        loss, flops = result(t), metric(t, COMPUTE_KEY)
        if cell and loss is not None and flops is not None and flops > 0:
            out[cell[0]].setdefault(cell[1], []).append((flops, loss))
    return out


def _fits(pts: dict[str, dict[str, list]]) -> dict[str, PowerLaw]:
    """A power law per arm whose points span two computes or more."""
    out = {}
    for arm, by_rung in pts.items():
        flat = [p for ps in by_rung.values() for p in ps]
        if len({c for c, _ in flat}) >= 2:
            out[arm] = fit(flat)
    return out


def _direction(gap_at_top: float, diff: float) -> str:
    """What the exponent difference says about the gap, given who leads at the top compute."""
    if diff == 0:
        return "the gap stays the same with compute"
    if gap_at_top < 0:
        return "its advantage grows with compute" if diff > 0 else "its advantage shrinks"
    return "its deficit shrinks with compute" if diff > 0 else "its deficit grows with compute"


def sentence(arm: str, base: str, f: PowerLaw, fb: PowerLaw, top: float) -> str:
    """One arm against the baseline: its fitted gap at `top` FLOPs and what the exponents say."""
    g: ExponentGap = exponent_gap(f, fb)
    rel = f.loss(top) / fb.loss(top) - 1
    side = "below" if rel < 0 else "above"
    text = (
        f"{arm}: fitted loss {100 * abs(rel):.3g} % {side} {base}'s at {top:.3g} FLOPs (the "
        f"largest measured); exponent b {f.b:.4g} vs {fb.b:.4g}, difference {g.diff:+.3g}"
    )
    if not math.isfinite(g.half):
        return (
            text + f": no interval ({f.n + fb.n} points; the difference needs 5 or more), so "
            "the data do not resolve whether the gap grows or shrinks; more seeds or more "
            "scales would"
        )
    text += f" ± {g.half:.2g} ({100 * CONFIDENCE:.0f} %, {g.df} df)"
    if g.resolved:
        return text + f": {_direction(rel, g.diff)}, and the interval excludes 0."
    return (
        text + f": the fits say {_direction(rel, g.diff)}, but the interval contains 0, so "
        "the data do not resolve whether the gap grows or shrinks; more seeds (narrower "
        "exponents) or more scales (a wider range of compute) would."
    )


def _chart(pts: dict, fits: dict[str, PowerLaw]) -> str:
    """Log-log PNG: per-seed points and the fitted line of every arm."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    from ablate.report.charts import _png

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (arm, by_rung) in enumerate(pts.items()):
        flat = [p for ps in by_rung.values() for p in ps]
        if not flat:
            continue
        color = f"C{i % 10}"
        ax.scatter([c for c, _ in flat], [v for _, v in flat], color=color, s=14, alpha=0.7)
        label = arm
        if arm in fits:
            f = fits[arm]
            lo, hi = min(c for c, _ in flat), max(c for c, _ in flat)
            xs = [lo * (hi / lo) ** (k / 20) for k in range(21)]
            ax.plot(xs, [f.loss(x) for x in xs], color=color)
            half = f" ± {f.half_b:.2g}" if math.isfinite(f.half_b) else ""
            label = f"{arm}: L = {f.a:.3g}·C^-b, b = {f.b:.3g}{half}"
        ax.plot([], [], color=color, marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs (forward + backward)")
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(FormatStrFormatter("%.3g"))  # losses span less than a decade: plain tick labels
    ax.set(ylabel="validation loss", title="Validation loss vs training compute")
    ax.legend(fontsize=8)
    return _png(fig)


def ladder_section(meta: dict, trials: list[dict]) -> dict[str, Any]:
    """Chart, fit table and per-arm sentences of a ladder sweep ({} for other sweeps)."""
    ladder = ladder_of(meta)
    if not ladder:
        return {}
    pts = points(ladder, trials)
    fits = _fits(pts)
    base = ladder["baseline"]
    rows = []
    for arm in ladder["arms"]:
        by_rung = pts[arm]
        f = fits.get(arm)
        cells = []
        for rung in ladder["rungs"]:
            ps = by_rung.get(rung, [])
            mean = sum(v for _, v in ps) / len(ps) if ps else math.nan
            cells.append(f"{mean:.4g} at {ps[0][0]:.3g} ({len(ps)})" if ps else "–")
        b = "–"
        if f:
            b = f"{f.b:.4g}" + (f" ± {f.half_b:.2g}" if math.isfinite(f.half_b) else "")
        rows.append({"arm": arm, "cells": cells, "a": f"{f.a:.4g}" if f else "–", "b": b})
    flat = [c for by_rung in pts.values() for ps in by_rung.values() for c, _ in ps]
    sentences = [
        sentence(a, base, fits[a], fits[base], max(flat))
        for a in ladder["arms"]
        if a != base and a in fits and base in fits
    ]
    missing = [a for a in ladder["arms"] if a not in fits]
    by_trial = {  # the trials table's scale and compute columns
        t.get("trial_id", ""): {
            "scale": ladder["cells"].get(t["arm"], ["", ""])[1],
            "flops": f"{c:.4g}" if (c := metric(t, COMPUTE_KEY)) is not None else "–",
        }
        for t in trials
    }
    return {
        "by_trial": by_trial,
        "rungs": ladder["rungs"],
        "baseline": base,
        "rows": rows,
        "sentences": sentences,
        "missing": missing,
        "png": _chart(pts, fits) if flat else "",
        "confidence": f"{100 * CONFIDENCE:.0f}",
    }
