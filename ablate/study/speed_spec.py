"""A sweep's `bench:` section: how `ablate bench` (and the end of `ablate run`) times the arms.

Validated like the rest of a sweep file: unknown keys and wrong types name the dotted key.
The measurement itself is `ablate.study.speed`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

from ablate.core.config import ConfigError


@dataclass(frozen=True, kw_only=True)
class BenchSpec:
    """A sweep's `bench:` section."""

    enabled: bool = True  # run at the end of `ablate run` (`ablate bench` runs regardless)
    repetitions: int = 5  # timed turns per arm
    warmup: int = 2  # untimed turns per arm before the first timed one
    steps: int = 3  # training steps per turn
    contexts: tuple[int, ...] = ()  # decode prompt lengths; () = max_seq_len / 8 and / 2
    decode_tokens: int = 16  # tokens decoded per turn
    threads: int = 0  # torch threads for every arm; 0 = the baseline's train.threads (0 -> 1)


_MINIMUM = {"repetitions": 1, "warmup": 0, "steps": 1, "decode_tokens": 1, "threads": 0}


def bench_spec(raw: Any, src: str) -> BenchSpec:
    """Validate a sweep's `bench:` mapping (None: the defaults)."""
    if raw is None:
        return BenchSpec()
    if not isinstance(raw, dict):
        raise ConfigError(src, "bench", f"expected a mapping, got {raw!r}")
    names = list(BenchSpec.__dataclass_fields__)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names)
            raise ConfigError(src, f"bench.{key}", "unknown bench option", close)
        if key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(src, "bench.enabled", f"expected true or false, got {value!r}")
            out[key] = value
        elif key == "contexts":
            if not isinstance(value, list) or not all(_is_int(v, 1) for v in value):
                raise ConfigError(src, "bench.contexts", f"expected positive integers: {value!r}")
            out[key] = tuple(value)
        elif not _is_int(value, _MINIMUM[key]):
            raise ConfigError(
                src, f"bench.{key}", f"expected an integer >= {_MINIMUM[key]}, got {value!r}"
            )
        else:
            out[key] = value
    return BenchSpec(**out)


def override(spec: BenchSpec, given: dict[str, Any], src: str) -> BenchSpec:
    """`spec` with the options in `given` that are not None, validated as `bench:` keys."""
    given = {k: v for k, v in given.items() if v is not None}
    checked = bench_spec(given, src)
    return replace(spec, **{k: getattr(checked, k) for k in given})


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
