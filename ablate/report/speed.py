"""Speed figures of a report, from the controlled benchmark (`ablate.study.speed`) only.

Each figure is a median with its interquartile range over interleaved repetitions. Two arms are
ranked only when their ranges do not overlap; otherwise the report says, in words, that they are
within the measurement spread. Without a benchmark the cells say how to run one: the training
loop's own tokens/s is kept as a record, never compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

SPEED_FILE = "speed.json"  # in the sweep's run directory
FORMAT = 1  # version of speed.json


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default method)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min, max and count of repeated measurements (NaN when empty)."""
    v = sorted(float(x) for x in values)
    if not v:
        nan = float("nan")
        return {"median": nan, "q1": nan, "q3": nan, "min": nan, "max": nan, "n": 0}
    return {
        "median": quantile(v, 0.5),
        "q1": quantile(v, 0.25),
        "q3": quantile(v, 0.75),
        "min": v[0],
        "max": v[-1],
        "n": len(v),
    }


def spread_pct(s: dict[str, float]) -> float:
    """Half the interquartile range as a percentage of the median."""
    return 100 * (s["q3"] - s["q1"]) / (2 * s["median"]) if s["median"] else math.inf


def within_spread(a: dict[str, float], b: dict[str, float]) -> bool:
    """True when the two interquartile ranges overlap: the difference is not resolved."""
    return a["q1"] <= b["q3"] and b["q1"] <= a["q3"]


def compare(
    name_a: str, a: dict[str, float], name_b: str, b: dict[str, float], what: str = "speed"
) -> str:
    """One sentence: which arm is faster by how much, or that the two cannot be ranked.

    Higher is faster (tokens/s); the spread quoted is the larger of the two arms'.
    """
    pct = max(spread_pct(a), spread_pct(b))
    if within_spread(a, b):
        return f"{what}: {name_a} and {name_b} within measurement spread (±{pct:.1f}%)"
    fast, slow = (name_a, name_b) if a["median"] > b["median"] else (name_b, name_a)
    ratio = max(a["median"], b["median"]) / min(a["median"], b["median"])
    return (
        f"{what}: {fast} {ratio:.2f}x faster than {slow} (outside measurement spread ±{pct:.1f}%)"
    )


def cell(s: dict[str, float] | None, digits: int = 3) -> str:
    """`median [q1–q3]` with thousands separators for large values."""
    if not s or not s.get("n"):
        return "–"

    def num(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 10 ** (digits - 1) else f"{x:.{digits}g}"

    return f"{num(s['median'])} [{num(s['q1'])}–{num(s['q3'])}]"


def not_measured(sweep_path: str) -> str:
    return f"not measured (run `ablate bench {sweep_path or 'SWEEP'}`)"


def arm_speed(speed: dict | None, arm: str, trial_ids: set[str]) -> dict | None:
    """The arm's benchmark entry, if it measured one of the arm's current trials."""
    entry = ((speed or {}).get("arms") or {}).get(arm)
    return entry if entry and entry.get("trial_id") in trial_ids else None


def _contexts(speed: dict) -> list[str]:
    ctxs = {c for e in speed["arms"].values() for c in e.get("decode", {}) if c != "speculative"}
    return sorted(ctxs, key=int)


def speed_section(
    speed: dict | None, arms: list[str], baseline: str | dict[str, str], ids: dict
) -> dict:
    """The report's speed table and its sentences; {} when no benchmark was run.

    `ids` maps each arm to its current trial ids (a benchmark of older trials is not shown).
    """
    if not speed:
        return {}
    entries = {a: e for a in arms if (e := arm_speed(speed, a, ids.get(a, set())))}
    if not entries:
        return {}
    ctxs = _contexts(speed)
    rows = []
    for a, e in entries.items():
        dec = e.get("decode", {})
        rows.append(
            {
                "arm": a,
                "weights": e["weights"],
                "tokens_per_s": cell(e["tokens_per_s"]),
                "step_ms": cell(e["step_ms"]),
                "cpu_step_ms": cell(e["cpu_step_ms"]),
                "decode": [cell((dec.get(c) or {}).get("decode_tokens_per_s")) for c in ctxs],
                "prefill": [cell((dec.get(c) or {}).get("prefill_ms")) for c in ctxs],
            }
        )
    return {
        "rows": rows,
        "contexts": ctxs,
        "claims": claims(entries, baseline, ctxs),
        "threads": speed.get("threads"),
        "cpus": speed.get("cpus"),
        "load": [round(speed["load_before"][0], 2), round(speed["load_after"][0], 2)],
        "repetitions": speed["spec"]["repetitions"],
        "steps": speed["spec"]["steps"],
        "created": speed.get("created", ""),
    }


def claims(entries: dict[str, dict], baseline: str | dict[str, str], ctxs: list[str]) -> list[str]:
    """Each arm against its baseline (the one baseline, or each compared arm's own, as
    `verdicts.baselines` gives them): training tokens/s, then decode tokens/s per context."""
    if isinstance(baseline, str):
        baseline = {a: baseline for a in entries if a != baseline}
    out = []
    for a, e in entries.items():
        name = baseline.get(a)
        if name not in entries:
            continue
        base = entries[name]
        out.append(compare(name, base["tokens_per_s"], a, e["tokens_per_s"], "training speed"))
        for c in ctxs:
            b_dec, a_dec = base["decode"].get(c), e["decode"].get(c)
            if b_dec and a_dec:
                what = f"decode speed at {c} tokens of context"
                out.append(
                    compare(
                        name, b_dec["decode_tokens_per_s"], a, a_dec["decode_tokens_per_s"], what
                    )
                )
    return out


def throughput_cell(speed: dict | None, arm: str, trial_ids: set[str], sweep_path: str) -> str:
    """The ablation table's training tokens/s: the benchmark's median [IQR], or how to get it."""
    entry = arm_speed(speed, arm, trial_ids)
    return cell(entry["tokens_per_s"]) if entry else not_measured(sweep_path)


def load_speed(run_dir: str | Path) -> dict | None:
    """A sweep's speed.json, or None when no benchmark was run (or it is unreadable)."""
    path = Path(run_dir) / SPEED_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None
