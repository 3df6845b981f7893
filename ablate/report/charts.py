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

from ablate.report.table import FAMILY_RE, metric, shown_arms

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


def charts(meta: dict, trials: list[dict]) -> list[dict]:
    """Base64 PNGs: loss curves, quality vs cost, throughput, heat maps, tuning.

    Each figure with shortened arm labels carries `legend`: (label, arm name) pairs.
    """
    from matplotlib import rc_context

    from ablate.report.charts_study import loss_curves, quality_vs_cost, seed_dots
    from ablate.report.charts_tune import tune_chart

    arms = shown_arms(meta, trials)
    labels, families = chart_labels(arms)
    with rc_context({"font.family": families} if families else {}):
        out = [
            *loss_curves(arms, trials, labels),
            *seed_dots(arms, trials, labels),
            *quality_vs_cost(arms, trials, labels),
            *_throughput(arms, trials, labels),
            *_heatmaps(arms, trials, labels),
            *tune_chart(meta, arms, labels),
        ]
    legend = [(labels[a], a) for a in arms if labels[a] != a]
    return [{**c, "legend": legend} for c in out] if legend else out


def _throughput(arms: list[str], trials: list[dict], labels: dict) -> list[dict[str, str]]:
    from matplotlib.figure import Figure

    bars = []  # (arm, mean, distance to min, distance to max) over done seeds
    for a in arms:
        tps = [
            v
            for t in trials
            if t["arm"] == a
            and t["state"] == "done"
            and (v := metric(t, "tokens_per_s")) is not None
        ]
        if tps:
            mean = sum(tps) / len(tps)
            bars.append((labels[a], mean, mean - min(tps), max(tps) - mean))
    if not bars:
        return []
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(
        [b[0] for b in bars],
        [b[1] for b in bars],
        capsize=4,
        yerr=[[b[2] for b in bars], [b[3] for b in bars]],
    )
    ax.set(ylabel="tokens / s", title="Training throughput (mean, min-max over seeds)")
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
