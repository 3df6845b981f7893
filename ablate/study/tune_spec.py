"""The `tune:` section of a sweep file, validated (the search itself is `ablate.study.tune`).

tune:
  trials: 6                      # Optuna trials per arm
  budget: {steps: 60}            # short budget of each tuning trial ({steps} or {tokens})
  lr: {low: 1.0e-4, high: 1.0e-2}          # peak learning rate, log scale (required)
  warmup_steps: {low: 0, high: 40}         # optional, integer
  weight_decay: {low: 0.0, high: 0.2}      # optional, linear
  pruner: median                 # median (fed by the trial's evaluations) or none
  pruner_warmup: 0               # steps of each trial before the pruner may stop it
  seed: 0                        # seed of the tuning trials (default: the sweep's first)
  storage: ""                    # Optuna RDB URL; default a journal file beside the ledger
  eval_every: 20                 # a tuning trial's evaluations (the pruner's input);
                                 # default: the arm's train.eval_every
"""

from __future__ import annotations

from typing import Any

from ablate.core.config import ConfigError
from ablate.study.arms import known_keys, mapping

KEYS = (
    "trials",
    "budget",
    "lr",
    "warmup_steps",
    "weight_decay",
    "pruner",
    "pruner_warmup",
    "seed",
    "storage",
    "eval_every",
)
PARAMS = {"lr": float, "warmup_steps": int, "weight_decay": float}  # train.<name>, its type
PRUNERS = ("median", "none")


def _number(value: Any, src: str, key: str, kind: type) -> float | int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or (kind is int and not float(value).is_integer()):
        raise ConfigError(src, key, f"expected {'an integer' if kind is int else 'a number'}")
    return kind(value)


def _range(raw: Any, src: str, name: str) -> dict[str, Any]:
    rng = mapping(raw, src, f"tune.{name}")
    if set(rng) != {"low", "high"}:
        raise ConfigError(src, f"tune.{name}", f"expected {{low: ..., high: ...}}, got {rng!r}")
    kind = PARAMS[name]
    low = _number(rng["low"], src, f"tune.{name}.low", kind)
    high = _number(rng["high"], src, f"tune.{name}.high", kind)
    if not low < high:
        raise ConfigError(src, f"tune.{name}", f"low must be below high, got {low} and {high}")
    if name == "lr" and low <= 0:
        raise ConfigError(src, "tune.lr.low", f"a log-scale range needs low > 0, got {low}")
    if low < 0:
        raise ConfigError(src, f"tune.{name}.low", f"must be >= 0, got {low}")
    return {"low": low, "high": high, "log": name == "lr", "int": kind is int}


def _whole(spec: dict, key: str, default: int | None, low: int, src: str) -> int:
    """`tune.<key>` (or `default`) as an integer >= `low`; a ConfigError naming it otherwise."""
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(src, f"tune.{key}", f"expected an integer >= {low}, got {value!r}")
    return value


def tune_spec(raw: Any, src: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """The validated `tune:` section ({} when absent); errors name `tune.<key>`."""
    spec = mapping(raw, src, "tune")
    if not spec:
        return {}
    known_keys(spec, KEYS, src, "tune.", "tune option")
    for key in ("trials", "budget", "lr"):
        if key not in spec:
            raise ConfigError(src, f"tune.{key}", "required tune key is missing")
    trials = _whole(spec, "trials", None, 1, src)
    budget = mapping(spec["budget"], src, "tune.budget")
    kind, value = next(iter(budget.items())) if len(budget) == 1 else ("", None)
    if kind not in ("steps", "tokens") or isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            src, "tune.budget", f"expected {{steps: N}} or {{tokens: N}}, got {budget!r}"
        )
    if value < 1:
        raise ConfigError(src, f"tune.budget.{kind}", f"expected an integer >= 1, got {value}")
    pruner = spec.get("pruner", "median")
    if pruner not in PRUNERS:
        raise ConfigError(src, "tune.pruner", f"expected one of {PRUNERS}, got {pruner!r}")
    warm = _whole(spec, "pruner_warmup", 0, 0, src)
    seed = _whole(spec, "seed", seeds[0], 0, src)
    eval_every = _whole(spec, "eval_every", 0, 0, src)
    storage = spec.get("storage", "")
    if not isinstance(storage, str):
        raise ConfigError(src, "tune.storage", f"expected an RDB URL string, got {storage!r}")
    return {
        "trials": trials,
        "budget": {kind: value},
        "space": {name: _range(spec[name], src, name) for name in PARAMS if name in spec},
        "pruner": pruner,
        "pruner_warmup": warm,
        "seed": seed,
        "storage": storage,
        "eval_every": eval_every,  # 0: the arm's own
    }
