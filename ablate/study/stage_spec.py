"""Stages in a sweep: arms whose trials start from, or read, another arm's same-seed trial.

    arms:
      base: {}
      ft_low: {from: base, train.steps: 50, train.lr: 1.0e-4}
      student: {post.stages: [{name: distill, teacher: "${trial:teacher}"}]}

`from: ARM` starts each of the arm's trials from the final weights of ARM's trial with the same
seed: the sweep sets `train.init_from: trial:<that trial's id>` (`ablate.core.stages`). A
string value anywhere in an arm may hold `${trial:ARM}`, which becomes `trial:<id>` of ARM's
same-seed trial (a distillation teacher, say). Either makes the trial wait for that trial (the
ledger hands it out once it is done, `ablate.study.order`) and puts that trial's id, so its
whole config, into the trial's own id. A `from:` arm trains the sweep's budget again unless it
sets `train.steps` itself (e.g. a short fine-tune, or 0 when only `post.stages` train). Each
referenced trial is trained once per seed, however many arms start from it. In a ladder, a
reference names an arm before expansion and means that arm at the same rung. Unknown arms,
self-references and cycles are errors naming the sweep key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ablate.core.config import ConfigError
from ablate.core.stages import make_ref

FROM_KEY = "from"
_REF_RE = re.compile(r"\$\{trial:([^}]*)\}")
PLACEHOLDER_ID = "0" * 12  # stands for a trial id while an arm is validated before ids exist


@dataclass(frozen=True)
class Stages:
    """Which arm starts from which, which arms each arm references, and a run order."""

    parents: dict[str, str] = field(default_factory=dict)  # arm -> the arm of its `from:`
    refs: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # arm -> key -> arms
    order: tuple[str, ...] = ()  # every arm after the arms it depends on (else as written)

    def deps(self, arm: str) -> list[str]:
        """The arms whose same-seed trials `arm`'s trials wait for (parent first)."""
        out = [self.parents[arm]] if arm in self.parents else []
        for arms in self.refs.get(arm, {}).values():
            out += [a for a in arms if a not in out]
        return out

    def overrides(self, arm: str, written: dict[str, Any], ids: Callable[[str], str]) -> dict:
        """`written` with every `${trial:ARM}` replaced by `trial:<ids(ARM)>`, plus the
        `train.init_from` of a `from:` arm."""
        out = {k: _substitute(v, lambda name: make_ref(ids(name))) for k, v in written.items()}
        if arm in self.parents:
            out["train.init_from"] = make_ref(ids(self.parents[arm]))
        return out

    def as_meta(self) -> dict[str, Any]:
        """JSON form kept with the ledger's meta (read by the report)."""
        return {"from": dict(self.parents), "after": {a: self.deps(a) for a in self.order}}


def _substitute(value: Any, ref: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return _REF_RE.sub(lambda m: ref(m.group(1).strip()), value)
    if isinstance(value, list):
        return [_substitute(v, ref) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, ref) for k, v in value.items()}
    return value


def _named(value: Any) -> list[str]:
    """Arm names referenced by `${trial:ARM}` anywhere in `value`."""
    names: list[str] = []
    _substitute(value, lambda name: names.append(name) or "")
    return names


def _check_arm(name: Any, arm: str, arms: dict, key: str, src: str, rename) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(src, key, f"expected the name of an arm, got {name!r}")
    full = rename(name, arm)
    if full not in arms:
        raise ConfigError(
            src,
            key,
            f"{name!r} is not an arm (arms: {', '.join(arms)})",
            difflib.get_close_matches(name, list(arms)),
        )
    if full == arm:
        raise ConfigError(src, key, f"arm {arm!r} cannot start from or reference itself")
    return full


def stage_spec(
    arms: dict[str, dict],
    where: dict[str, dict[str, str]],
    src: str,
    rename: Callable[[str, str], str] | None = None,
) -> tuple[dict[str, dict], Stages]:
    """Take `from:` out of each arm's overrides and validate every reference.

    `rename(name, arm)`: the expanded arm a reference `name` in `arm` means (a ladder's rung;
    None: `name` itself). Returns the arms without `from:` and their `Stages`.
    """
    rename = rename or (lambda name, arm: name)
    out, parents, refs, keys = {}, {}, {}, {}
    for arm, overrides in arms.items():
        overrides = dict(overrides)
        sweep_key = where[arm].get(FROM_KEY, f"arms.{arm}")
        if FROM_KEY in overrides:
            key = f"{sweep_key}.{FROM_KEY}"
            if "train.init_from" in overrides:
                raise ConfigError(src, key, "sets where to start twice (train.init_from too)")
            parents[arm] = _check_arm(overrides.pop(FROM_KEY), arm, arms, key, src, rename)
            keys[(arm, parents[arm])] = key
        for k, v in overrides.items():
            key = f"{where[arm].get(k, f'arms.{arm}')}.{k}"
            for name in _named(v):
                full = _check_arm(name, arm, arms, key, src, rename)
                refs.setdefault(arm, {}).setdefault(k, []).append(full)
                keys.setdefault((arm, full), key)
        out[arm] = overrides
    order = _order(list(arms), Stages(parents, refs), keys, src)
    return out, Stages(parents, refs, tuple(order))


def _order(arms: list[str], stages: Stages, keys: dict, src: str) -> list[str]:
    """Arms in written order, each moved after its dependencies; a cycle is an error."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(arm: str) -> None:
        if arm in order:
            return
        if arm in visiting:
            cycle = [*visiting[visiting.index(arm) :], arm]
            key = keys[(cycle[-2], arm)]
            raise ConfigError(src, key, "a cycle of stages: " + " -> ".join(cycle))
        visiting.append(arm)
        for dep in stages.deps(arm):
            visit(dep)
        visiting.pop()
        order.append(arm)

    for arm in arms:
        visit(arm)
    return order


def placeholder_ids(name: str) -> str:
    """A stand-in trial id for validating an arm before the ids it references exist."""
    return PLACEHOLDER_ID
