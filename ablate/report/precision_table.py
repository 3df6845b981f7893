"""The report's precision table: per arm, what each precision transform recorded."""

from __future__ import annotations

from typing import Any

from ablate.report import stats
from ablate.report.table import _fmt, _plain, flatten, shown_arms


def precision_table(meta: dict, trials: list[dict]) -> dict[str, Any]:
    """Per arm: what each precision transform recorded (backend, tiles, error statistics).

    Text facts are shown as recorded; numbers as mean +- CI over the arm's finished seeds.
    """
    arms = shown_arms(meta, trials)
    done = {a: [t for t in trials if t["arm"] == a and t["state"] == "done"] for a in arms}
    flat = {
        a: [flatten((t["summary"] or {}).get("precision") or {}) for t in done[a]] for a in arms
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
