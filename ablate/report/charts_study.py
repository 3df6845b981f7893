"""Study figures: loss curves against tokens and training time, and quality against cost.

Curves: training and validation loss of every arm against tokens seen and against training
time (evaluations excluded), as the mean over seeds with a min-max band and thin per-seed lines.
Quality vs cost: validation perplexity (exp of the mean loss over finished seeds) against KV-cache
bytes per token, training tokens/s and activated parameters per token, with the Pareto front
(arms no other arm beats on both axes) joined by a line.
"""

from __future__ import annotations

import math

from ablate.report.table import metric, result

CURVES = (("loss", "training loss"), ("val_loss", "validation loss"))
AXES = (("tokens", "tokens seen"), ("train_s", "training time (s, evaluations excluded)"))


def _tokens_per_step(cfg: dict) -> int:
    d, t = cfg.get("data") or {}, cfg.get("train") or {}
    return int(d.get("batch_size", 1)) * int(d.get("seq_len", 1)) * int(t.get("grad_accum", 1))


def _series(trial: dict, key: str, x: str) -> dict[int, tuple[float, float]]:
    """step -> (x value, loss) of one trial's logged rows that carry `key`."""
    per_step = _tokens_per_step(trial.get("config") or {})
    out = {}
    for r in trial["records"]:
        value = r.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and "step" in r:
            xv = r["step"] * per_step if x == "tokens" else r.get("train_s")
            if isinstance(xv, (int, float)):
                out[int(r["step"])] = (float(xv), float(value))
    return out


def loss_curves(arms: list[str], trials: list[dict], labels: dict) -> list[dict[str, str]]:
    """One 2x2 figure: (training, validation loss) x (tokens, training time)."""
    from matplotlib.figure import Figure

    from ablate.report.charts import _png

    fig = Figure(figsize=(10, 7), layout="constrained")
    grid = fig.subplots(2, 2, squeeze=False)
    drawn = False
    for row, (key, name) in enumerate(CURVES):
        for col, (x, xname) in enumerate(AXES):
            ax = grid[row][col]
            for i, a in enumerate(arms):
                runs = [_series(t, key, x) for t in trials if t["arm"] == a]
                runs = [r for r in runs if r]
                if not runs:
                    continue
                color = f"C{i % 10}"
                for r in runs:  # per-seed lines
                    steps = sorted(r)
                    ax.plot(
                        [r[s][0] for s in steps],
                        [r[s][1] for s in steps],
                        color=color,
                        alpha=0.25,
                        linewidth=0.8,
                    )
                common = sorted(set.intersection(*(set(r) for r in runs)))
                xs = [sum(r[s][0] for r in runs) / len(runs) for s in common]
                ys = [[r[s][1] for r in runs] for s in common]
                ax.plot(xs, [sum(v) / len(v) for v in ys], color=color, label=labels[a])
                ax.fill_between(
                    xs, [min(v) for v in ys], [max(v) for v in ys], color=color, alpha=0.15
                )
                drawn = True
            ax.set(xlabel=xname, ylabel=name)
            if ax.lines:
                ax.legend(fontsize=7)
    if not drawn:
        return []
    fig.suptitle("Loss curves (mean over seeds, min-max band, thin lines: single seeds)")
    return [{"title": "Loss curves", "png": _png(fig)}]


def _activated(trial: dict) -> float | None:
    """Activated parameters per token of a trial's model (meta device), None if not buildable."""
    from ablate.accounting.params import build_meta, count_params, totals
    from ablate.core.config import from_dict, replace

    if not trial.get("config"):
        return None
    try:
        cfg = from_dict(trial["config"], f"trial {trial.get('trial_id', '')}")
        vocab = (trial["summary"] or {}).get("vocab_size") or cfg.model.vocab_size
        cfg = replace(cfg, model=replace(cfg.model, vocab_size=int(vocab)))
        return float(totals(count_params(build_meta(cfg)))[1])
    except (ValueError, KeyError, TypeError):  # a config this code can no longer build
        return None


def pareto(points: list[tuple[float, float]], higher_x_better: bool) -> list[int]:
    """Indices of the non-dominated points (lower y better; x lower or, if set, higher better)."""
    sign = -1 if higher_x_better else 1
    keep = []
    for i, (x, y) in enumerate(points):
        beaten = any(
            sign * x2 <= sign * x and y2 <= y and (sign * x2 < sign * x or y2 < y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        )
        if not beaten:
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


def _cost(arm_trials: list[dict], key: str) -> float | None:
    if key == "activated_params":
        values = [v for t in arm_trials[:1] if (v := _activated(t)) is not None]
    else:
        values = [v for t in arm_trials if (v := metric(t, key)) is not None]
    return sum(values) / len(values) if values else None


COSTS = (
    ("kv_cache_bytes_per_token", "KV cache (bytes / token)", False),
    ("tokens_per_s", "train throughput (tokens / s)", True),
    ("activated_params", "activated parameters / token", False),
)


def quality_vs_cost(
    arms: list[str], trials: list[dict], labels: dict, bench_tps: dict[str, float] | None = None
) -> list[dict[str, str]]:
    """Val perplexity against each cost the trials have, Pareto front marked (2+ arms).

    Throughput is the controlled benchmark's median (`bench_tps`, arm -> tokens/s), never the
    training loop's wall clock; without a benchmark that panel is left out.
    """
    from matplotlib.figure import Figure

    from ablate.report.charts import _png

    done = {a: [t for t in trials if t["arm"] == a and result(t) is not None] for a in arms}
    ppl = {a: math.exp(sum(result(t) for t in ts) / len(ts)) for a, ts in done.items() if ts}
    panels = []
    for key, name, higher in COSTS:
        if key == "tokens_per_s":
            pts = [(a, bench_tps[a], ppl[a]) for a in ppl if a in (bench_tps or {})]
        else:
            pts = [(a, c, ppl[a]) for a in ppl if (c := _cost(done[a], key)) is not None]
        if len(pts) >= 2:
            panels.append((name, higher, pts))
    if not panels:
        return []
    fig = Figure(figsize=(3.6 * len(panels), 3.4), layout="constrained")
    for ax, (name, higher, pts) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        front = pareto([(c, p) for _, c, p in pts], higher)
        ax.plot(
            [pts[i][1] for i in front],
            [pts[i][2] for i in front],
            "k--",
            linewidth=1,
            label="Pareto front",
        )
        for i, (a, c, p) in enumerate(pts):
            ax.scatter(
                [c],
                [p],
                color=f"C{arms.index(a) % 10}",
                zorder=3,
                marker="o" if i in front else "s",
            )
            ax.annotate(labels[a], (c, p), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel=name, ylabel="val perplexity")
        ax.legend(fontsize=7)
    fig.suptitle("Quality vs cost (better: down, and left, or right for throughput)")
    return [{"title": "Quality vs cost", "png": _png(fig)}]


def seed_dots(
    arms: list[str], trials: list[dict], labels: dict, verdict: dict | None = None
) -> list[dict[str, str]]:
    """Each arm's per-seed values of the verdict metric (`verdict:`, default validation loss) as
    dots beside their mean and 95% t-interval."""
    from matplotlib.figure import Figure

    from ablate.report import stats
    from ablate.report.charts import _png
    from ablate.report.labels import label

    key = (verdict or {}).get("metric", "val_loss")
    name = "validation loss" if key == "val_loss" else label(key)
    values = {
        a: [v for t in trials if t["arm"] == a and (v := result(t, key)) is not None] for a in arms
    }
    shown = [a for a in arms if values[a]]
    if not shown:
        return []
    fig = Figure(figsize=(max(4.0, 1.2 * len(shown) + 2), 3.4), layout="constrained")
    ax = fig.add_subplot()
    for i, a in enumerate(shown):
        vs = values[a]
        offsets = [(j - (len(vs) - 1) / 2) * 0.06 for j in range(len(vs))]
        ax.scatter([i + o for o in offsets], vs, color=f"C{arms.index(a) % 10}", alpha=0.7)
        mean, half = stats.mean_ci(vs)
        err = [[half], [half]] if math.isfinite(half) else None
        ax.errorbar([i + 0.25], [mean], yerr=err, fmt="D", color="k", capsize=4)
    ax.set_xticks(range(len(shown)), [labels[a] for a in shown])
    ax.set(ylabel=name, title="Per seed (dots) and mean with 95% CI (diamond)")
    return [{"title": f"{name[0].upper()}{name[1:]} per seed", "png": _png(fig)}]
