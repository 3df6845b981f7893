"""Self-contained HTML report and results.csv of a sweep, rebuilt from its ledger at any time.

The ablation table has one row per arm: a check/cross column per component choice that varies
across arms, the other varying config values, then measured results with 95% intervals over
seeds and a paired test against the baseline arm. The engine never names a component: columns
come from the resolved configs and from whatever metrics the trials wrote.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from ablate.report import stats
from ablate.study.ledger import Ledger

TEMPLATE = "report.html.j2"
FAMILY_RE = re.compile(r"^(.+)/(\d+)$")  # `expert_load/3`: index 3 of a per-index family
SHOWN_METRICS = ("val_loss", "val_ppl")  # already in the table as dedicated columns
FIG_DPI = 90


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _slots(d: dict, prefix: str = "") -> dict[str, str]:
    """Dotted path -> component name for every component slot (a mapping with `name`)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            key = f"{prefix}.{k}" if prefix else k
            if "name" in v:
                out[key] = str(v["name"])
            out.update(_slots(v, key))
    return out


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
    return rows


def load_trials(ledger: Ledger) -> list[dict[str, Any]]:
    """Active ledger rows with their summary.json and metrics.jsonl (where written)."""
    trials = []
    for row in ledger.rows():
        path = Path(row["path"])
        summary_path = path / "summary.json"
        row["summary"] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        row["records"] = _read_jsonl(path / "metrics.jsonl")
        trials.append(row)
    return trials


def _num(x: float, digits: int) -> str:
    """Large values with thousands separators, small ones with `digits` significant digits."""
    return f"{x:,.0f}" if abs(x) >= 10 ** (digits - 1) else f"{x:.{digits}g}"


def _fmt(mean: float, half: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "–"
    ci = f" ± {_num(half, 2)}" if math.isfinite(half) and half > 0 else ""
    return f"{_num(mean, digits)}{ci}"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _metric(trial: dict, key: str) -> float | None:
    s = trial["summary"] or trial["metrics"]
    value = s.get(key) if key in s else (s.get("metrics") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ablation_table(meta: dict, trials: list[dict]) -> dict[str, Any]:
    """Columns and rows of the ablation table (plain strings, escaped later by the template)."""
    arms = [a for a in meta["arms"] if any(t["arm"] == a for t in trials)]
    by_arm = {a: [t for t in trials if t["arm"] == a] for a in arms}
    done = {a: [t for t in ts if t["state"] == "done"] for a, ts in by_arm.items()}
    cfgs = {a: by_arm[a][0]["config"] for a in arms}
    slots = {a: _slots(cfgs[a]) for a in arms}
    comp_cols = []  # (label, slot path, component name)
    for path in sorted({p for s in slots.values() for p in s}):
        names = sorted({slots[a].get(path, "") for a in arms} - {""})
        if len({slots[a].get(path, "") for a in arms}) > 1:
            comp_cols += [(f"{path.rsplit('.', 1)[-1]}: {n}", path, n) for n in names]
    slot_paths = {p for s in slots.values() for p in s}
    flat = {a: _flatten(cfgs[a]) for a in arms}
    explicit = {k for t in trials for k in _flatten(t["overrides"])}
    value_keys = []
    for key in sorted({k for f in flat.values() for k in f}):
        if key == "train.seed" or (key.endswith(".name") and key[:-5] in slot_paths):
            continue
        present = [json.dumps(flat[a][key]) for a in arms if key in flat[a]]
        if len(set(present)) > 1 or (key in explicit and len(present) < len(arms)):
            value_keys.append(key)
    metric_keys = sorted(
        {
            k
            for t in trials
            for k, v in (t["summary"].get("metrics") or t["metrics"].get("metrics") or {}).items()
            if isinstance(v, (int, float)) and k not in SHOWN_METRICS and not FAMILY_RE.match(k)
        }
    )
    base = meta["baseline"]
    base_by_seed = {t["seed"]: _metric(t, "val_ppl") for t in done.get(base, [])}
    base_loss = {t["seed"]: _metric(t, "val_loss") for t in done.get(base, [])}
    rows = []
    for a in arms:
        ts = done[a]
        ppl = {t["seed"]: _metric(t, "val_ppl") for t in ts}
        row: dict[str, Any] = {
            "arm": a,
            "baseline": a == base,
            "seeds": f"{len(ts)}/{len(by_arm[a])}",
            "components": [slots[a].get(path) == n for _, path, n in comp_cols],
            "values": [_plain(flat[a][k]) if k in flat[a] else "—" for k in value_keys],
            "val_ppl": _fmt(*stats.mean_ci(list(ppl.values()))),
            "tokens_per_s": _fmt(*stats.mean_ci([_metric(t, "tokens_per_s") for t in ts]), 3),
            "num_params": next(
                (f"{int(p):,}" for t in by_arm[a] if (p := _metric(t, "num_params")) is not None),
                "–",
            ),
            "precision": ", ".join(
                sorted(
                    {
                        str(t["summary"]["precision"]["backend"])
                        for t in by_arm[a]
                        if "backend" in (t["summary"].get("precision") or {})
                    }
                )
            ),
            "metrics": [_fmt(*stats.mean_ci([_metric(t, k) for t in ts])) for k in metric_keys],
            "delta": "baseline" if a == base else "–",
            "p": "",
            "significant": True,
            "gap": "–",
        }
        if a != base:
            diff, p, n = stats.paired_test(ppl, base_by_seed)
            if n:
                row["delta"] = f"{diff:+.4g}"
                row["p"] = f"p={p:.3g}" if math.isfinite(p) else f"n={n}, no test"
                row["significant"] = stats.significant(p) or not math.isfinite(p)
            loss = {t["seed"]: _metric(t, "val_loss") for t in ts}
            gaps = [
                100 * (loss[s] - base_loss[s]) / base_loss[s]
                for s in loss
                if s in base_loss and loss[s] is not None and base_loss[s]
            ]
            row["gap"] = _fmt(*stats.mean_ci(gaps), 3) + " %" if gaps else "–"
        row["settings"] = [(k, v) for k, v in zip(value_keys, row["values"]) if v != "—"]
        rows.append(row)
    return {
        "component_cols": [c[0] for c in comp_cols],
        "value_cols": value_keys,
        "metric_cols": metric_keys,
        "rows": rows,
        "show_precision": any(r["precision"] for r in rows),
    }


def precision_table(meta: dict, trials: list[dict]) -> dict[str, Any]:
    """Per arm: what each precision transform recorded (backend, tiles, error statistics).

    Text facts are shown as recorded; numbers as mean +- CI over the arm's finished seeds.
    """
    arms = [a for a in meta["arms"] if any(t["arm"] == a for t in trials)]
    done = {a: [t for t in trials if t["arm"] == a and t["state"] == "done"] for a in arms}
    flat = {
        a: [_flatten((t["summary"] or {}).get("precision") or {}) for t in done[a]] for a in arms
    }
    keys = sorted({k for fs in flat.values() for f in fs for k in f})
    if not any(isinstance(v, (int, float)) for fs in flat.values() for f in fs for v in f.values()):
        return {}
    rows = []
    for a in arms:
        cells = []
        for k in keys:
            values = [f[k] for f in flat[a] if k in f]
            if values and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            ):
                cells.append(_fmt(*stats.mean_ci([float(v) for v in values]), 3))
            else:
                cells.append(", ".join(sorted({_plain(v) for v in values})) or "–")
        rows.append({"arm": a, "cells": cells})
    return {"cols": keys, "rows": rows}


def _png(fig) -> str:
    buf = io.BytesIO()
    # No "Software" tag: it would embed matplotlib's web address in every image.
    fig.savefig(buf, format="png", dpi=FIG_DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def charts(meta: dict, trials: list[dict]) -> list[dict[str, str]]:
    """Base64 PNGs: val-loss curves, throughput bars, one heat map per per-index family."""
    from matplotlib.figure import Figure

    arms = [a for a in meta["arms"] if any(t["arm"] == a for t in trials)]
    out = []
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for a in arms:
        by_step: dict[int, list[float]] = {}
        for t in trials:
            if t["arm"] == a:
                for r in t["records"]:
                    if "val_loss" in r:
                        by_step.setdefault(r["step"], []).append(r["val_loss"])
        if by_step:
            steps = sorted(by_step)
            mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
            (line,) = ax.plot(steps, mean, marker="o", label=a)
            ax.fill_between(
                steps,
                [min(by_step[s]) for s in steps],
                [max(by_step[s]) for s in steps],
                alpha=0.2,
                color=line.get_color(),
            )
    ax.set(xlabel="step", ylabel="validation loss", title="Validation loss (mean, min-max band)")
    if ax.lines:
        ax.legend()
        out.append({"title": "Validation loss", "png": _png(fig)})
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    bars = []  # (arm, mean, distance to min, distance to max) over done seeds
    for a in arms:
        tps = [
            v
            for t in trials
            if t["arm"] == a
            and t["state"] == "done"
            and (v := _metric(t, "tokens_per_s")) is not None
        ]
        if tps:
            mean = sum(tps) / len(tps)
            bars.append((a, mean, mean - min(tps), max(tps) - mean))
    if bars:
        ax.bar(
            [b[0] for b in bars],
            [b[1] for b in bars],
            capsize=4,
            yerr=[[b[2] for b in bars], [b[3] for b in bars]],
        )
        ax.set(ylabel="tokens / s", title="Training throughput (mean, min-max over seeds)")
        out.append({"title": "Throughput", "png": _png(fig)})
    out += _heatmaps(arms, trials)
    return out


def _heatmaps(arms: list[str], trials: list[dict]) -> list[dict[str, str]]:
    from matplotlib.figure import Figure

    families: dict[str, set[int]] = {}
    for t in trials:
        for r in t["records"]:
            for k in r:
                if m := FAMILY_RE.match(k):
                    families.setdefault(m.group(1), set()).add(int(m.group(2)))
    out = []
    for fam, indices in sorted(families.items()):
        n_idx = max(indices) + 1
        grids: dict[str, tuple[list[int], list[list[float]]]] = {}  # arm -> (steps, grid)
        for a in arms:
            cells: dict[int, list[list[float]]] = {}  # step -> per-index values over seeds
            for t in trials:
                if t["arm"] != a:
                    continue
                for r in t["records"]:
                    vals = [r.get(f"{fam}/{j}") for j in range(n_idx)]
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
                        for j in range(n_idx)
                    ],
                )
        finite = [v for _, g in grids.values() for row in g for v in row if math.isfinite(v)]
        # One colour scale for every arm, so the panels compare directly.
        vmin, vmax = (min(finite), max(finite)) if finite else (None, None)
        fig = Figure(figsize=(7, 2.5 * len(arms)), layout="constrained")
        for i, a in enumerate(arms):
            ax = fig.add_subplot(len(arms), 1, i + 1)
            ax.set(title=f"{fam} — {a}", ylabel="index")
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
                extent=(steps[0] - half, steps[-1] + half, -0.5, n_idx - 0.5),
                vmin=vmin,
                vmax=vmax,
            )
            ax.set_xlabel("step")
            fig.colorbar(im, ax=ax)
        out.append({"title": f"{fam} (per index, one colour scale)", "png": _png(fig)})
    return out


def repro_block(meta: dict, trials: list[dict]) -> dict[str, Any]:
    summaries = [t["summary"] for t in trials if t["summary"]]
    revs = sorted(
        {
            f"{s.get('git_rev', 'unknown')}{' (dirty)' if s.get('git_dirty') else ''}"
            for s in summaries
        }
    )
    first = summaries[0] if summaries else {}
    return {
        "sweep_text": meta.get("sweep_text", ""),
        "sweep_path": meta.get("sweep_path", ""),
        "cli": " ".join(meta.get("cli_overrides", [])),
        "base_config": meta.get("base_config", ""),
        "git": revs or ["(no finished trial)"],
        "versions": first.get("versions", {}),
        "hardware": first.get("hardware", {}),
        "seeds": meta.get("seeds", []),
        "fingerprint": meta.get("fingerprint", ""),
    }


CSV_FIELDS = (
    "arm",
    "seed",
    "trial_id",
    "state",
    "attempts",
    "val_loss",
    "val_ppl",
    "tokens_per_s",
    "num_params",
    "reason",
    "path",
)


def write_csv(path: Path, trials: list[dict]) -> None:
    """One row per trial: identity, state and every scalar metric."""
    extra = sorted(
        {
            k
            for t in trials
            for k, v in (t["summary"].get("metrics") or {}).items()
            if isinstance(v, (int, float)) and k not in SHOWN_METRICS
        }
    )
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*CSV_FIELDS, *extra])
        w.writeheader()
        for t in trials:
            row = {
                k: t.get(k, "")
                for k in ("arm", "seed", "trial_id", "state", "attempts", "reason", "path")
            }
            for k in ("val_loss", "val_ppl", "tokens_per_s", "num_params", *extra):
                row[k] = _metric(t, k)
            w.writerow(row)


def render(run_dir: str | Path, out_dir: str | Path, title: str = "") -> Path:
    """Write `index.html` and `results.csv` for the sweep in `run_dir`; returns the HTML path."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from ablate.study.launch import LEDGER

    ledger = Ledger(Path(run_dir) / LEDGER, readonly=True)
    try:
        meta, trials = ledger.meta(), load_trials(ledger)
    finally:
        ledger.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", trials)
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    problems = [t for t in trials if t["state"] in ("diverged", "failed")]
    html = env.get_template(TEMPLATE).render(
        name=meta.get("name", ""),
        title=title or f"Ablation report: {meta.get('name', '')}",
        baseline=meta.get("baseline", ""),
        table=ablation_table(meta, trials),
        precision=precision_table(meta, trials),
        charts=charts(meta, trials),
        problems=problems,
        trials=trials,
        repro=repro_block(meta, trials),
        alpha=stats.ALPHA,
        confidence=stats.CONFIDENCE,
        counts={
            s: sum(t["state"] == s for t in trials)
            for s in ("done", "diverged", "failed", "running", "pending")
        },
    )
    path = out / "index.html"
    path.write_text(html)
    return path
