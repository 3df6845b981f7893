"""Ladders: the same arms at several scales (`ladder:` in a sweep), for loss-vs-compute studies.

    ladder:
      w64: {scale.width: 0.5}
      w128: {}
      w192: {scale.width: 1.5}

Each rung is a named mapping of dotted overrides (typically a `scale:` rule of
`ablate.core.scale`, or explicit widths) applied on top of every arm: arm `mla` at rung `w64`
becomes the arm `mla@w64`, so a sweep expands to rungs x arms x seeds and every trial keeps the
(arm, seed) identity the ledger, the launcher and the bench use. Its trial id is still the hash
of its resolved config, so a sweep without `ladder:` keeps its ids. A rung may not set a key an
arm sets (which of the two wins would be a guess). Each arm is compared with the baseline at
the same rung (`mla@w64` with `mha@w64`); the structure reaches the report as `report.ladder`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from ablate.core.config import ConfigError
from ablate.study.arms import mapping

SEP = "@"  # joins an arm and a rung into the expanded arm's name
MIN_RUNGS = 2  # a slope in compute needs two scales (the report asks for more to resolve one)
_RUNG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # no '@' or '/', which join arm names


@dataclass(frozen=True)
class Ladder:
    """The rungs of a ladder sweep and the arms each one repeats."""

    rungs: tuple[str, ...]  # rung names, smallest scale first as written
    arms: tuple[str, ...]  # the arms before expansion
    baseline: str  # the baseline arm before expansion

    def name(self, arm: str, rung: str) -> str:
        """The expanded arm's name: `arm@rung`."""
        return f"{arm}{SEP}{rung}"

    def cells(self) -> dict[str, tuple[str, str]]:
        """Expanded arm name -> (arm, rung), rung by rung."""
        return {self.name(a, r): (a, r) for r in self.rungs for a in self.arms}

    def baselines(self) -> dict[str, str]:
        """Each non-baseline expanded arm -> the baseline at its rung."""
        return {
            n: self.name(self.baseline, r)
            for n, (a, r) in self.cells().items()
            if a != self.baseline
        }

    def as_meta(self) -> dict[str, Any]:
        """JSON form stored with the sweep's report options (read by `ablate.report.ladder`)."""
        return {
            "rungs": list(self.rungs),
            "arms": list(self.arms),
            "baseline": self.baseline,
            "cells": {n: list(c) for n, c in self.cells().items()},
        }


def _rungs(spec: dict, src: str) -> dict[str, dict[str, Any]]:
    """The validated `ladder:` mapping: rung name -> dotted overrides."""
    raw = spec["ladder"]
    if not isinstance(raw, dict) or len(raw) < MIN_RUNGS:
        raise ConfigError(
            src,
            "ladder",
            f"expected a mapping of at least {MIN_RUNGS} rung names to overrides "
            f"(e.g. {{w64: {{scale.width: 0.5}}, w128: {{}}}}), got {raw!r}",
        )
    rungs = {}
    for name, overrides in raw.items():
        if not isinstance(name, str) or not _RUNG_RE.match(name):
            raise ConfigError(
                src,
                f"ladder.{name}",
                "a rung name must be letters, digits, '_', '-' or '.' (it joins arm names "
                f"as arm{SEP}rung), got {name!r}",
            )
        rungs[name] = mapping(overrides, src, f"ladder.{name}")
    return rungs


def _clash(arm_keys: dict, rung_keys: dict) -> tuple[str, str] | None:
    """An (arm key, rung key) pair where one sets the other or a value inside it."""
    for k in arm_keys:
        for r in rung_keys:
            if k == r or k.startswith(r + ".") or r.startswith(k + "."):
                return k, r
    return None


def expand_ladder(
    spec: dict, src: str, arms: dict[str, dict], where: dict[str, dict[str, str]]
) -> tuple[dict[str, dict], dict[str, dict[str, str]], Ladder | None]:
    """Arms x rungs (rung by rung) when the sweep has `ladder:`; unchanged arms otherwise.

    Returns the arms' dotted overrides, the sweep key of each override, and the `Ladder`.
    """
    if spec.get("ladder") is None:
        return arms, where, None
    rungs = _rungs(spec, src)
    if spec["baseline"] not in arms:
        raise ConfigError(
            src,
            "baseline",
            f"{spec['baseline']!r} is not an arm (arms: {', '.join(arms)})",
            difflib.get_close_matches(str(spec["baseline"]), list(arms)),
        )
    ladder = Ladder(tuple(rungs), tuple(arms), str(spec["baseline"]))
    out: dict[str, dict] = {}
    out_where: dict[str, dict[str, str]] = {}
    for name, (arm, rung) in ladder.cells().items():
        clash = _clash(arms[arm], rungs[rung])
        if clash:
            raise ConfigError(
                src,
                f"ladder.{rung}.{clash[1]}",
                f"arm {arm!r} sets {clash[0]} too: a rung may not set what an arm sets "
                "(scale the arm's value with a `scale:` rule instead)",
            )
        out[name] = {**arms[arm], **rungs[rung]}
        out_where[name] = {**where[arm], **{k: f"ladder.{rung}" for k in rungs[rung]}}
    return out, out_where, ladder
