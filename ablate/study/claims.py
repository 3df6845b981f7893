"""Sweep keys for what a study claims: `verdict:` (the metric the verdicts test and which way is
better), `equivalence:` (a TOST margin) and `paper:` (published results per arm). All are
validated here and travel to the report in the sweep's `report`.
"""

from __future__ import annotations

import difflib
from typing import Any

from ablate.core.config import ConfigError
from ablate.study.arms import known_keys, mapping

DEFAULT_VERDICT = {"metric": "val_loss", "goal": "min"}
GOALS = ("min", "max")


def verdict(spec: dict, src: str) -> dict[str, str]:
    """`verdict: {metric: post_val_pass1, goal: max}`: the summary metric the verdicts, the
    paired differences and the seed counts are computed on (default: val_loss, lower is better).
    A metric other than val_loss states its goal; a metric no trial records gives "no test"."""
    v = mapping(spec.get("verdict"), src, "verdict")
    if not v:
        return dict(DEFAULT_VERDICT)
    known_keys(v, ("metric", "goal"), src, "verdict.", "verdict option")
    metric = v.get("metric", DEFAULT_VERDICT["metric"])
    if not isinstance(metric, str) or not metric.strip():
        raise ConfigError(src, "verdict.metric", f"expected a summary metric name, got {metric!r}")
    if "goal" not in v and metric != DEFAULT_VERDICT["metric"]:
        raise ConfigError(
            src, "verdict.goal", f"state whether {metric} is better low (min) or high (max)"
        )
    goal = v.get("goal", DEFAULT_VERDICT["goal"])
    if goal not in GOALS:
        raise ConfigError(
            src,
            "verdict.goal",
            f"expected min or max, got {goal!r}",
            difflib.get_close_matches(str(goal), GOALS),
        )
    return {"metric": metric, "goal": goal}


def equivalence(spec: dict, src: str) -> dict[str, Any]:
    """`equivalence: {margin: 0.0025, relative: true}`: the margin a TOST tests against."""
    eq = mapping(spec.get("equivalence"), src, "equivalence")
    if not eq:
        return {}
    known_keys(eq, ("margin", "relative"), src, "equivalence.", "equivalence option")
    margin = eq.get("margin")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise ConfigError(src, "equivalence.margin", f"expected a number > 0, got {margin!r}")
    relative = eq.get("relative", False)
    if not isinstance(relative, bool):
        raise ConfigError(src, "equivalence.relative", f"expected true or false, got {relative!r}")
    if relative and margin >= 1:
        raise ConfigError(
            src, "equivalence.margin", f"a relative margin is a fraction < 1, got {margin!r}"
        )
    return {"margin": float(margin), "relative": relative}


def paper(spec: dict, src: str, arms: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`paper: {arm: {value: ..., source: "..."}}`: a published result beside the measured one."""
    paper = mapping(spec.get("paper"), src, "paper")
    out = {}
    for arm, entry in paper.items():
        if arm not in arms:
            raise ConfigError(
                src,
                f"paper.{arm}",
                f"{arm!r} is not an arm (arms: {', '.join(arms)})",
                difflib.get_close_matches(str(arm), list(arms)),
            )
        entry = mapping(entry, src, f"paper.{arm}")
        if set(entry) != {"value", "source"}:
            raise ConfigError(
                src, f"paper.{arm}", f"expected {{value: ..., source: ...}}, got {entry!r}"
            )
        if not isinstance(entry["source"], str) or not entry["source"].strip():
            raise ConfigError(src, f"paper.{arm}.source", "must name the paper and its table")
        out[str(arm)] = {"value": entry["value"], "source": entry["source"]}
    return out
