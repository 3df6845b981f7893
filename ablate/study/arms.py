"""Sweep arms: explicit `arms`, `grid` points and `zip` rows, as dotted-key overrides.

Each arm is a mapping of dotted config keys (`model.attention.name`) to values; `nest` turns one
into the nested layer that config layering merges.
"""

from __future__ import annotations

import difflib
import itertools
from typing import Any

from ablate.core.config import ConfigError


def nest(dotted: dict[str, Any], src: str = "<sweep>", where: str = "") -> dict[str, Any]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}` (later keys merge into earlier mappings)."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = str(key).split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    src,
                    f"{where}{key}",
                    "sets a key inside a value that another "
                    "key of the same mapping sets as a whole",
                )
        node[leaf] = value
    return out


def known_keys(section: dict, allowed, src: str, prefix: str, what: str) -> None:
    """A ConfigError naming `<prefix><key>` and its close matches for a key not in `allowed`."""
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), [str(a) for a in allowed])
            raise ConfigError(src, f"{prefix}{key}", f"unknown {what}", close)


def mapping(value: Any, src: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(src, key, f"expected a mapping, got {value!r}")
    return value


def _axis_lists(value: Any, src: str, key: str) -> dict[str, list]:
    axes = mapping(value, src, key)
    for k, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(src, f"{key}.{k}", f"expected a non-empty list, got {values!r}")
    return axes


def _short_names(keys: list[str]) -> dict[str, str]:
    """Last dotted part of each key, or the whole key where the last part is ambiguous."""
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves)}


def _points(axes: dict[str, list], combine) -> list[tuple[str, dict, dict]]:
    """(name, overrides, {override key: sweep key}) for each point of a grid or zip axis."""
    keys = list(axes)
    short = _short_names(keys)
    out = []
    for values in combine(*(axes[k] for k in keys)):
        point = dict(zip(keys, values))
        name = ",".join(f"{short[k]}={v}" for k, v in point.items())
        out.append((name, point, {k: None for k in keys}))
    return out


def expand_arms(spec: dict, src: str) -> tuple[dict[str, dict], dict[str, dict[str, str]]]:
    """Arms in order: explicit `arms` x `grid` points x `zip` rows (absent parts are neutral).

    Returns the arms' dotted overrides and, per arm, the sweep key each override came from.
    """
    explicit = mapping(spec.get("arms"), src, "arms")
    parts: list[list[tuple[str, dict, dict]]] = []
    if explicit:
        part = []
        for name, overrides in explicit.items():
            overrides = mapping(overrides, src, f"arms.{name}")
            part.append((str(name), overrides, {k: f"arms.{name}" for k in overrides}))
        parts.append(part)
    grid = _axis_lists(spec.get("grid"), src, "grid")
    if grid:
        points = _points(grid, itertools.product)
        parts.append([(n, o, {k: "grid" for k in w}) for n, o, w in points])
    zipped = _axis_lists(spec.get("zip"), src, "zip")
    if zipped:
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(src, "zip", f"lists must have equal lengths, got {lengths}")
        parts.append([(n, o, {k: "zip" for k in w}) for n, o, w in _points(zipped, zip)])
    if not parts:
        raise ConfigError(src, "arms", "a sweep needs `arms`, `grid` or `zip`")
    arms: dict[str, dict] = {}
    where: dict[str, dict[str, str]] = {}
    for combo in itertools.product(*parts):
        name = "/".join(n for n, _, _ in combo)
        if name in arms:
            raise ConfigError(src, "arms", f"two arms are both named {name!r}")
        arms[name] = {k: v for _, o, _ in combo for k, v in o.items()}
        where[name] = {k: w for _, _, ws in combo for k, w in ws.items()}
    return arms, where
