"""The tuning figure: per arm, validation loss against learning rate from its Optuna study.

Reads the summaries `ablate tune` stores in the ledger's meta (`tune`): completed trials as
filled dots, pruned ones (at their last reported loss) as hollow ones, diverged ones as crosses
on the top edge, and the chosen value as a vertical line.
"""

from __future__ import annotations

import math


def tune_chart(meta: dict, arms: list[str], labels: dict[str, str]) -> list[dict[str, str]]:
    """One figure with a panel per tuned arm (none when the sweep was not tuned)."""
    from matplotlib.figure import Figure

    from ablate.report.charts import _png

    tuned = (meta.get("tune") or {}).get("arms") or {}
    shown = [a for a in arms if tuned.get(a, {}).get("trials")]
    if not shown:
        return []
    fig = Figure(figsize=(3.2 * len(shown), 3.2), layout="constrained")
    axes = fig.subplots(1, len(shown), sharey=True, squeeze=False)[0]
    for ax, arm in zip(axes, shown):
        study = tuned[arm]
        rows = [r for r in study["trials"] if "lr" in r["params"]]
        finite = [r["value"] for r in rows if r["value"] is not None]
        top = max(finite) if finite else 1.0
        for state, style, color in (
            ("done", "o", "C0"),
            ("pruned", "o", "C1"),
            ("diverged", "x", "C3"),
        ):
            pts = [r for r in rows if r["state"] == state]
            if not pts:
                continue
            ys = [r["value"] if r["value"] is not None else top for r in pts]
            face = "none" if state == "pruned" else color
            paint = {"color": color} if style == "x" else {"facecolors": face, "edgecolors": color}
            ax.scatter([r["params"]["lr"] for r in pts], ys, marker=style, label=state, **paint)
        chosen = study.get("chosen", {}).get("lr")
        if chosen is not None and math.isfinite(chosen):
            ax.axvline(chosen, color="k", linestyle="--", linewidth=1, label=f"chosen {chosen:.3g}")
        ax.set(xscale="log", xlabel="peak learning rate", title=labels.get(arm, arm))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("validation loss (tuning budget)")
    return [{"title": "Learning-rate tuning (Optuna)", "png": _png(fig)}]
