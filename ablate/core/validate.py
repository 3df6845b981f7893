"""Validation: a merged raw mapping becomes typed, frozen dataclasses, or a `ConfigError`.

Component slots (fields made by `config.slot`) are built as the chosen component's own
`Config`; every error names the source layer, the dotted key and close matches.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal

from ablate import registry
from ablate.core.layers import ConfigError, Layers


def _coerce(value: Any, tp: Any, key: str, src: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(src, key, f"expected {getattr(tp, '__name__', tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                src,
                key,
                f"must be one of {list(args)}, got {value!r}",
                difflib.get_close_matches(str(value), map(str, args)),
            )
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, src)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", src) for i, v in enumerate(value))
        return tuple(_coerce(v, a, f"{key}[{i}]", src) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def _build_slot(group: str, data: Any, key: str, layers: Layers, default: Any) -> Any:
    if isinstance(data, str):  # shorthand `attention: mla`
        data = {"name": data}
    if not isinstance(data, dict):
        raise ConfigError(
            layers.source_of(key), key, f"expected a mapping with `name`, got {data!r}"
        )
    data = dict(data)
    name = data.pop("name", registry.name_of(default)[1])
    try:
        cls = registry.get(group, name)
    except ValueError:
        known = registry.names(group)
        raise ConfigError(
            layers.source_of(f"{key}.name"),
            f"{key}.name",
            f"unknown {group} {name!r} (known: {', '.join(known)})",
            difflib.get_close_matches(str(name), known),
        ) from None
    return build_dataclass(cls.Config, data, key, layers)


def _build_slot_list(f: dataclasses.Field, data: Any, key: str, layers: Layers) -> tuple:
    if not isinstance(data, (list, tuple)):
        raise ConfigError(layers.source_of(key), key, f"expected a list of slots, got {data!r}")
    group, defaults = f.metadata["group"], f.default_factory()
    first = defaults[0] if defaults else registry.get(group, registry.names(group)[0]).Config()
    return tuple(_build_slot(group, v, f"{key}[{i}]", layers, first) for i, v in enumerate(data))


def build_dataclass(cls: type, data: dict, prefix: str, layers: Layers) -> Any:
    """Validate a raw mapping into dataclass `cls`, recursing into slots and sub-configs."""
    if not isinstance(data, dict):
        raise ConfigError(layers.source_of(prefix), prefix, f"expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            owner = registry.name_of_class(cls) if registry.is_config(cls) else ()
            where = f" for {'/'.join(owner)}" if owner else ""
            raise ConfigError(
                layers.source_of(key),
                key,
                f"unknown key{where}",
                difflib.get_close_matches(str(k), list(fields)),
            )
        f = fields[k]
        if f.metadata.get("many"):
            kwargs[k] = _build_slot_list(f, v, key, layers)
        elif "group" in f.metadata:
            kwargs[k] = _build_slot(f.metadata["group"], v, key, layers, f.default_factory())
        elif dataclasses.is_dataclass(hints[k]):
            kwargs[k] = build_dataclass(hints[k], v, key, layers)
        else:
            kwargs[k] = _coerce(v, hints[k], key, layers.source_of(key))
    return cls(**kwargs)


def walk(obj: Any, prefix: str = ""):
    """Yield (dotted key, dataclass instance) for `obj` and every nested config (slot lists
    included, as `key[i]`)."""
    yield prefix, obj
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(v):
            yield from walk(v, key)
        elif isinstance(v, tuple) and v and all(dataclasses.is_dataclass(x) for x in v):
            for i, x in enumerate(v):
                yield from walk(x, f"{key}[{i}]")


def _positive(v: Any, cfg: Any) -> bool:
    return v > 0


def _non_negative(v: Any, cfg: Any) -> bool:
    return v >= 0


def _unit(v: Any, cfg: Any) -> bool:
    return 0 <= v < 1


# (dotted key, predicate(value, cfg), what the value must be, or a function of cfg giving it);
# every float is also checked finite (`_non_finite`)
RANGES: list[tuple[str, Callable[[Any, Any], bool], str | Callable[[Any], str]]] = [
    ("model.vocab_size", _non_negative, ">= 0 (0: taken from the tokenizer)"),
    ("model.dim", _positive, ">= 1"),
    ("model.num_layers", _positive, ">= 1"),
    ("model.num_heads", _positive, ">= 1"),
    ("model.max_seq_len", _positive, ">= 1"),
    ("model.rope_theta", _positive, "> 0"),
    ("model.init_std", _positive, "> 0"),
    ("data.seq_len", _positive, ">= 1"),
    (
        "data.seq_len",
        lambda v, c: v <= c.model.max_seq_len,
        lambda c: f"<= model.max_seq_len ({c.model.max_seq_len})",
    ),
    ("data.batch_size", _positive, ">= 1"),
    ("data.val_fraction", lambda v, c: 0 < v < 1, "in (0, 1)"),
    ("data.eval_windows", _non_negative, ">= 0 (0: the whole validation split)"),
    (
        "train.steps",
        lambda v, c: v >= 1 or (v == 0 and c.post.active()),
        ">= 1 (0 only when a post.stages stage trains)",
    ),
    ("train.lr", _positive, "> 0"),
    ("train.min_lr", _non_negative, ">= 0"),
    (
        "train.min_lr",
        lambda v, c: v <= c.train.lr,
        lambda c: f"<= train.lr ({c.train.lr}), the floor the cosine decays to",
    ),
    ("train.warmup_steps", _non_negative, ">= 0"),
    ("train.weight_decay", _non_negative, ">= 0"),
    ("train.beta1", _unit, "in [0, 1)"),
    ("train.beta2", _unit, "in [0, 1)"),
    ("train.grad_clip", _non_negative, ">= 0 (0 disables clipping)"),
    ("train.grad_accum", _positive, ">= 1"),
    ("train.eval_every", _positive, ">= 1 (the last step is always evaluated)"),
    ("train.log_every", _positive, ">= 1 (the last step is always logged)"),
    ("train.checkpoint_every", _non_negative, ">= 0 (0: only at the end)"),
    ("train.loss_cap", _positive, "> 0"),
    ("train.threads", _non_negative, ">= 0"),
]


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _non_finite(cfg: Any) -> Iterator[tuple[str, float]]:
    """(dotted key, value) of every non-finite float field, in every config and slot.

    A field may allow nan/inf with `field(..., metadata={"nonfinite": True})`.
    """
    for prefix, node in walk(cfg):
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            values = v if isinstance(v, tuple) else (v,)
            for i, x in enumerate(values):
                if (
                    isinstance(x, float)
                    and not math.isfinite(x)
                    and not f.metadata.get("nonfinite")
                ):
                    key = f"{prefix}.{f.name}" if prefix else f.name
                    yield (f"{key}[{i}]" if isinstance(v, tuple) else key), x


def check(cfg: Any, layers: Layers) -> None:
    """Range checks of a built `Config`, then every config's own `check(cfg)` hook."""
    for key, value in _non_finite(cfg):
        raise ConfigError(layers.source_of(key), key, f"{value} is not a finite number")
    for key, ok, need in RANGES:
        value = _get(cfg, key)
        if not ok(value, cfg):
            need = need(cfg) if callable(need) else need
            raise ConfigError(layers.source_of(key), key, f"{value!r}: must be {need}")
    device = cfg.train.device
    if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
        key = "train.device"
        raise ConfigError(layers.source_of(key), key, "must be cpu, cuda, cuda:N or auto")
    for key, node in walk(cfg):
        check = getattr(node, "check", None)
        if callable(check):
            try:
                check(cfg)
            except ValueError as e:
                raise ConfigError(layers.source_of(key), key, str(e)) from None
