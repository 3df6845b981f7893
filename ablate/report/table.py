"""The report's tables: the ablation table (one row per arm) and the precision table.

The ablation table has a check/cross column per component choice that varies across arms, the
other varying config values, then measured results with 95% intervals over seeds and a paired
test against the baseline arm. Columns come from the resolved configs and from whatever metrics
the trials wrote: no component is named. Cells are plain strings, escaped by the template.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ablate.core import memory
from ablate.report import speed, stats
from ablate.report.labels import label, move_common
from ablate.report.verdicts import Metric, baselines, verdicts

FAMILY_RE = re.compile(r"^(.+)/(\d+)$")  # `expert_load/3`: index 3 of a per-index family
SHOWN_METRICS = ("val_loss", "val_ppl")  # already in the table as dedicated columns
# top-level summary figures (ablate.core.throughput); mfu only where the device peak is known
COMPUTE_COLS = ("activated_params", "train_flops_per_token", "achieved_flops_per_s", "mfu")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {dotted key: leaf value}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
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


def metric(trial: dict, key: str) -> float | None:
    """A numeric result of a trial: top-level summary key, else under `metrics`; None if absent."""
    s = trial["summary"] or trial["metrics"]
    value = s.get(key) if key in s else (s.get("metrics") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def shown_arms(meta: dict, trials: list[dict]) -> list[str]:
    """The sweep's arms that have at least one trial, in sweep order."""
    return [a for a in meta["arms"] if any(t["arm"] == a for t in trials)]


def _component_cols(slots: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """(label, slot path, component name) for every choice of a slot that varies across arms."""
    cols = []
    for path in sorted({p for s in slots.values() for p in s}):
        values = {s.get(path, "") for s in slots.values()}
        if len(values) > 1:
            cols += [(f"{path.rsplit('.', 1)[-1]}: {n}", path, n) for n in sorted(values - {""})]
    return cols


def _value_keys(
    flat: dict[str, dict[str, Any]], slot_paths: set[str], trials: list[dict]
) -> list[str]:
    """Config keys (not seeds, not slot names) that differ across arms or were set explicitly."""
    explicit = {k for t in trials for k in flatten(t["overrides"])}
    keys = []
    for key in sorted({k for f in flat.values() for k in f}):
        if key == "train.seed" or (key.endswith(".name") and key[:-5] in slot_paths):
            continue
        present = [json.dumps(f[key]) for f in flat.values() if key in f]
        if len(set(present)) > 1 or (key in explicit and len(present) < len(flat)):
            keys.append(key)
    return keys


def compute_keys(trials: list[dict]) -> list[str]:
    """The summary's compute figures (`COMPUTE_COLS`) any trial recorded as a number."""
    return [
        k
        for k in COMPUTE_COLS
        if any(isinstance((t["summary"] or {}).get(k), (int, float)) for t in trials)
    ]


def _metric_keys(trials: list[dict]) -> list[str]:
    """The peak-memory figure(s), the compute figures and the scalar component metrics any
    trial recorded, per-index families excluded."""
    summaries = [t["summary"] or {} for t in trials]
    return (
        memory.recorded(summaries)
        + compute_keys(trials)
        + sorted(
            {
                k
                for t in trials
                for k, v in (
                    t["summary"].get("metrics") or t["metrics"].get("metrics") or {}
                ).items()
                if isinstance(v, (int, float)) and k not in SHOWN_METRICS and not FAMILY_RE.match(k)
            }
        )
    )


def result(trial: dict, key: str = "val_loss") -> float | None:
    """A finished trial's finite result; None for unfinished, diverged or non-finite ones."""
    value = metric(trial, key) if trial["state"] == "done" else None
    return value if stats.finite(value) else None


def _no_result(trial: dict | None, key: str) -> str:
    """Why a trial has no result for `key` ("" when it has one)."""
    if trial is None:
        return "missing"
    if result(trial, key) is not None:
        return ""
    if trial["state"] != "done":
        return trial["state"]
    return f"non-finite {key}" if metric(trial, key) is not None else f"no {key} recorded"


def _excluded(
    trials: list[dict], seeds: tuple[int, ...], base: dict[int, dict] | None, key: str
) -> str:
    """Which of an arm's seeds are left out of its row, and why (its own reason first)."""
    out = []
    for t in sorted(trials, key=lambda t: t["seed"]):
        if t["seed"] not in seeds:
            why = _no_result(t, key) or f"baseline {_no_result((base or {}).get(t['seed']), key)}"
            out.append(f"seed {t['seed']}: {why}")
    return "; ".join(out)


def _ppl(mean: float, half: float) -> str:
    """exp of a mean loss (a geometric-mean perplexity) with the exp of its interval."""
    if not math.isfinite(mean):
        return "–"
    ci = ""
    if math.isfinite(half) and half > 0:
        ci = f" [{_num(math.exp(mean - half), 3)}, {_num(math.exp(mean + half), 3)}]"
    return f"{_num(math.exp(mean), 4)}{ci}"


def _versus_baseline(row: dict, cmp: stats.Paired, key: str) -> None:
    """Fill a non-baseline row's paired difference in the verdict metric `key`, its p-value and
    (for val_loss) the perplexity change."""
    if not cmp.n:
        return
    ci = f" ± {_num(cmp.half, 2)}" if math.isfinite(cmp.half) else ""
    row["delta"] = f"{cmp.diff:+.4g}{ci}"
    row["p"] = f"p={cmp.p:.3g}" if math.isfinite(cmp.p) else f"n={cmp.n}, no test"
    row["significant"] = cmp.significant or not math.isfinite(cmp.p)
    if key != "val_loss":
        return
    # exp(mean loss difference) is the ratio of geometric-mean perplexities: a monotone map of
    # the same interval, so it excludes 0 % exactly when the loss interval excludes 0
    gap = 100 * math.expm1(cmp.diff)
    row["gap"] = f"{gap:+.3g} %"
    if math.isfinite(cmp.half) and cmp.half > 0:
        lo, hi = (100 * math.expm1(cmp.diff + s * cmp.half) for s in (-1, 1))
        row["gap"] += f" [{lo:+.2g}, {hi:+.2g}]"


def _named_refs(flat: dict[str, Any], trials: list[dict]) -> dict[str, Any]:
    """A `trial:<id>` value (one seed's trial, `ablate.core.stages`) as the arm it names."""
    arm_of = {t.get("trial_id"): t["arm"] for t in trials}
    return {
        k: f"${{trial:{arm_of.get(v[6:], v[6:])}}}"
        if isinstance(v, str) and v.startswith("trial:")
        else v
        for k, v in flat.items()
    }


def _arm_row(
    arm: str, trials: list[dict], seeds: tuple[int, ...], cols: dict[str, list], flat: dict
) -> dict[str, Any]:
    """One arm's cells; `trials` are all of its trials, every result over `seeds` only."""
    used = [t for t in trials if t["seed"] in seeds]
    backends = {
        str(t["summary"]["precision"]["backend"])
        for t in trials
        if "backend" in (t["summary"].get("precision") or {})
    }
    loss = stats.mean_ci([result(t) for t in used])
    return {
        "arm": arm,
        "seeds": f"{len(seeds)}/{len(trials)}",
        "used_seeds": list(seeds),
        "values": [_plain(flat[k]) if k in flat else "—" for k in cols["values"]],
        "val_loss": _fmt(*loss),
        "val_ppl": _ppl(*loss),
        # the training loop's own wall clock: a record of the run, never compared across arms
        "loop_tokens_per_s": _fmt(*stats.mean_ci([metric(t, "tokens_per_s") for t in used]), 3),
        "num_params": next(
            (f"{int(p):,}" for t in trials if (p := metric(t, "num_params")) is not None), "–"
        ),
        "precision": ", ".join(sorted(backends)),
        "metrics": [_fmt(*stats.mean_ci([metric(t, k) for t in used])) for k in cols["metrics"]],
        "delta": "–",
        "p": "",
        "significant": True,
        "gap": "–",
    }


def ablation_table(meta: dict, trials: list[dict], bench: dict | None = None) -> dict[str, Any]:
    """Columns and rows of the ablation table (plain strings, escaped later by the template).

    `bench`: the sweep's speed.json (`ablate.study.speed`), the only source of compared speed.
    """
    arms = shown_arms(meta, trials)
    by_arm = {a: [t for t in trials if t["arm"] == a] for a in arms}
    cfgs = {a: by_arm[a][0]["config"] for a in arms}
    slots = {a: _slots(cfgs[a]) for a in arms}
    comp_cols = _component_cols(slots)
    flat = {a: _named_refs(flatten(cfgs[a]), trials) for a in arms}
    cols = {
        "values": _value_keys(flat, {p for s in slots.values() for p in s}, trials),
        "metrics": _metric_keys(trials),
    }
    base_of = baselines(meta, arms)  # compared arm -> its baseline (one per rung in a ladder)
    claims = meta.get("report") or {}
    m = Metric.of(claims.get("verdict"))  # what the verdicts compare (default val loss)
    loss = {a: {t["seed"]: result(t, m.key) for t in by_arm[a]} for a in arms}
    cmps = {a: stats.paired(loss[a], loss.get(b, {})) for a, b in base_of.items()}
    verdict = verdicts(
        cmps,
        {**loss, meta["baseline"]: loss.get(meta["baseline"], {})},
        base_of,
        claims.get("equivalence"),
        m,
    )
    paper = claims.get("paper") or {}
    parents = (claims.get("stages") or {}).get("from", {})  # stage arm -> the arm it starts from
    rows = []
    for a in arms:
        # every column of a row over one seed set: those both this arm and the baseline finished
        cmp = cmps.get(a)
        seeds = cmp.seeds if cmp else stats.shared_seeds(loss[a])
        row = _arm_row(a, by_arm[a], seeds, cols, flat[a])
        ids = {t.get("trial_id") for t in by_arm[a]}
        row["tokens_per_s"] = speed.throughput_cell(bench, a, ids, meta.get("sweep_path", ""))
        base_by_seed = {t["seed"]: t for t in by_arm.get(base_of.get(a, ""), [])}
        row["excluded"] = _excluded(by_arm[a], seeds, base_by_seed if cmp else None, m.key)
        row["baseline"] = cmp is None
        row["components"] = [slots[a].get(path) == n for _, path, n in comp_cols]
        row["paper"] = f"{paper[a]['value']} ({paper[a]['source']})" if a in paper else ""
        row["stage"] = f"from: {parents[a]}" if a in parents else ""
        if cmp is None:
            row["delta"], row["verdict"], row["verdict_word"] = "baseline", "baseline", "baseline"
        else:
            _versus_baseline(row, cmp, m.key)
            row["verdict"], row["verdict_word"] = verdict[a].line, verdict[a].word
        row["settings"] = [(k, v) for k, v in zip(cols["values"], row["values"]) if v != "—"]
        rows.append(row)
    return move_common(
        {
            "component_cols": [c[0] for c in comp_cols],
            "value_cols": cols["values"],
            "metric_cols": cols["metrics"],
            "metric_labels": [label(k) for k in cols["metrics"]],
            "rows": rows,
            "show_precision": any(r["precision"] for r in rows),
            "show_params": True,
            "show_paper": bool(paper),
            "equivalence": claims.get("equivalence") or {},
            "verdict_label": "val loss" if m.key == "val_loss" else label(m.key),
            "verdict_goal": m.goal,
            "show_gap": m.key == "val_loss",
        }
    )
