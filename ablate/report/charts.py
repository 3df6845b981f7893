"""The report's figures as base64 PNGs: loss curves and quality vs cost (`charts_study`),
training throughput, one heat map per per-index metric family (e.g. `expert_load/<i>`) and
the tuning figure (`charts_tune`). matplotlib is imported only
when a chart is drawn, so importing the report package stays light.
"""

from __future__ import annotations

import base64
import io
import math
import warnings

from ablate.report.table import FAMILY_RE, shown_arms

FIG_DPI = 90
MAX_LABEL_CHARS = 24  # longer arm names are cut with an ellipsis in the figures


def _png(fig) -> str:
    buf = io.BytesIO()
    # No "Software" tag: it would embed matplotlib's web address in every image.
    fig.savefig(buf, format="png", dpi=FIG_DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _charmap(path: str) -> set[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return set(FT2Font(path).get_charmap())
    except (OSError, RuntimeError):  # an unreadable font file
        return set()


def font_families(text: str) -> list[str] | None:
    """matplotlib font families that draw every character of `text` (None: no installed font).

    The default font first, then the first installed font with the glyphs it lacks (CJK, ...).
    """
    from matplotlib import font_manager, rcParams

    default = font_manager.findfont(font_manager.FontProperties(family=rcParams["font.family"]))
    missing = {ord(c) for c in text} - _charmap(default)
    if not missing:
        return list(rcParams["font.family"])
    for entry in font_manager.fontManager.ttflist:
        # matplotlib's Last Resort font "covers" everything with placeholder boxes
        if "Last Resort" not in entry.name and missing <= _charmap(entry.fname):
            return [*rcParams["font.family"], entry.name]
    return None


def chart_labels(arms: list[str]) -> tuple[dict[str, str], list[str] | None]:
    """Arm -> its label in the figures, and the font families that draw them.

    Names are cut to MAX_LABEL_CHARS; when no installed font draws them they become A1, A2, ...
    (the report then shows each figure's legend of labels and real names).
    """
    families = font_families("".join(arms) + "…")
    if families is None:
        warnings.warn(
            "no installed font draws every arm name (install a CJK font such as Noto Sans CJK): "
            "figures label the arms A1, A2, ... with a legend below each",
            stacklevel=2,
        )
        return {a: f"A{i + 1}" for i, a in enumerate(arms)}, None
    cut = {a: a if len(a) <= MAX_LABEL_CHARS else a[: MAX_LABEL_CHARS - 1] + "…" for a in arms}
    return cut, families


def charts(meta: dict, trials: list[dict], bench: dict | None = None) -> list[dict]:
    """Base64 PNGs: loss curves, quality vs cost, throughput, heat maps, tuning.

    Throughput comes only from `bench` (the sweep's speed.json): no benchmark, no such figure.

    Each figure with shortened arm labels carries `legend`: (label, arm name) pairs.
    """
    from matplotlib import rc_context

    from ablate.report.charts_study import loss_curves, quality_vs_cost, seed_dots
    from ablate.report.charts_tune import tune_chart
    from ablate.report.speed import arm_speed

    arms = shown_arms(meta, trials)
    labels, families = chart_labels(arms)
    ids = {a: {t.get("trial_id") for t in trials if t["arm"] == a} for a in arms}
    tps = {a: e["tokens_per_s"] for a in arms if (e := arm_speed(bench, a, ids[a]))}
    with rc_context({"font.family": families} if families else {}):
        out = [
            *loss_curves(arms, trials, labels),
            *seed_dots(arms, trials, labels, (meta.get("report") or {}).get("verdict")),
            *quality_vs_cost(arms, trials, labels, {a: s["median"] for a, s in tps.items()}),
            *_throughput(tps, labels),
            *_heatmaps(arms, trials, labels),
            *tune_chart(meta, arms, labels),
        ]
    legend = [(labels[a], a) for a in arms if labels[a] != a]
    return [{**c, "legend": legend} for c in out] if legend else out


def _throughput(bench: dict[str, dict], labels: dict) -> list[dict[str, str]]:
    """Bars of the benchmark's training tokens/s per arm: median, interquartile range."""
    from matplotlib.figure import Figure

    if not bench:
        return []
    names = [labels[a] for a in bench]
    med = [s["median"] for s in bench.values()]
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(
        names,
        med,
        capsize=4,
        yerr=[
            [m - s["q1"] for m, s in zip(med, bench.values())],
            [s["q3"] - m for m, s in zip(med, bench.values())],
        ],
    )
    ax.set(ylabel="tokens / s", title="Training throughput (benchmark: median, IQR)")
    return [{"title": "Throughput", "png": _png(fig)}]


def _family_grids(
    fam: str, num_idx: int, arms: list[str], trials: list[dict]
) -> dict[str, tuple[list[int], list[list[float]]]]:
    """arm -> (logged steps, grid[index][step]: the family's value, mean over seeds)."""
    grids = {}
    for a in arms:
        cells: dict[int, list[list[float]]] = {}  # step -> per-index values over seeds
        for t in trials:
            if t["arm"] != a:
                continue
            for r in t["records"]:
                vals = [r.get(f"{fam}/{j}") for j in range(num_idx)]
                if any(v is not None for v in vals):
                    cells.setdefault(r["step"], []).append(
                        [math.nan if v is None else float(v) for v in vals]
                    )
        if cells:
            steps = sorted(cells)
            grids[a] = (
                steps,
                [
                    [sum(v[j] for v in cells[s]) / len(cells[s]) for s in steps]
                    for j in range(num_idx)
                ],
            )
    return grids


def _heatmaps(arms: list[str], trials: list[dict], labels: dict) -> list[dict[str, str]]:
    from matplotlib.figure import Figure

    families: dict[str, set[int]] = {}
    for t in trials:
        for r in t["records"]:
            for k in r:
                if m := FAMILY_RE.match(k):
                    families.setdefault(m.group(1), set()).add(int(m.group(2)))
    out = []
    for fam, indices in sorted(families.items()):
        num_idx = max(indices) + 1
        grids = _family_grids(fam, num_idx, arms, trials)
        finite = [v for _, g in grids.values() for row in g for v in row if math.isfinite(v)]
        # One colour scale for every arm, so the panels compare directly.
        vmin, vmax = (min(finite), max(finite)) if finite else (None, None)
        fig = Figure(figsize=(7, 2.5 * len(arms)), layout="constrained")
        for i, a in enumerate(arms):
            ax = fig.add_subplot(len(arms), 1, i + 1)
            ax.set(title=f"{fam} — {labels[a]}", ylabel="index")
            if a not in grids:
                ax.text(0.5, 0.5, "not logged", ha="center", va="center")
                continue
            steps, grid = grids[a]
            half = (steps[1] - steps[0]) / 2 if len(steps) > 1 else 0.5  # cells centred on steps
            im = ax.imshow(
                grid,
                aspect="auto",
                origin="lower",
                interpolation="nearest",
                extent=(steps[0] - half, steps[-1] + half, -0.5, num_idx - 0.5),
                vmin=vmin,
                vmax=vmax,
            )
            ax.set_xlabel("step")
            fig.colorbar(im, ax=ax)
        out.append({"title": f"{fam} (per index, one colour scale)", "png": _png(fig)})
    return out
