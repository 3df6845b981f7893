"""The top level of a sweep file: its keys, the required ones, its name, budget and integers.

Split from `ablate.study.sweep`, which expands the validated spec into trials; errors name the
sweep file and key like every config error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ablate.core.config import ConfigError
from ablate.study.arms import known_keys, mapping

TOP_KEYS = (
    "name",
    "base",
    "seeds",
    "budget",
    "baseline",
    "overrides",
    "plugins",
    "tracking",
    "report",
    "max_attempts",
    "grid",
    "zip",
    "arms",
    "verdict",
    "equivalence",
    "paper",
    "tune",
    "bench",
    "ladder",
)
DEFAULT_MAX_ATTEMPTS = 2  # a failed trial is started at most this many times in total
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # sweep names become directory names


def integer(value: Any, src: str, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(src, key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def read_spec(path: Path) -> tuple[dict, str]:
    from ablate.core.config import read_yaml

    spec = read_yaml(path)
    src = str(path)
    known_keys(spec, TOP_KEYS, src, "", "sweep key")
    for key in ("name", "base", "seeds", "budget", "baseline"):
        if key not in spec:
            raise ConfigError(src, key, "required sweep key is missing")
    if not isinstance(spec["name"], str) or not _NAME_RE.match(spec["name"]):
        raise ConfigError(
            src,
            "name",
            "must be letters, digits, '_', '-' or '.' (it names "
            f"runs/<name>/), got {spec['name']!r}",
        )
    return spec, src


def budget_of(spec: dict, src: str) -> dict[str, int]:
    budget = mapping(spec["budget"], src, "budget")
    if len(budget) != 1 or next(iter(budget)) not in ("steps", "tokens"):
        raise ConfigError(src, "budget", f"expected {{steps: N}} or {{tokens: N}}, got {budget!r}")
    kind, value = next(iter(budget.items()))
    return {kind: integer(value, src, f"budget.{kind}", minimum=1)}
