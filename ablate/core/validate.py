"""Validation: a merged raw mapping becomes typed, frozen dataclasses, or a `ConfigError`.

Component slots (fields made by `config.slot`) are built as the chosen component's own
`Config`; every error names the source layer, the dotted key and close matches.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
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
        if "group" in f.metadata:
            kwargs[k] = _build_slot(f.metadata["group"], v, key, layers, f.default_factory())
        elif dataclasses.is_dataclass(hints[k]):
            kwargs[k] = build_dataclass(hints[k], v, key, layers)
        else:
            kwargs[k] = _coerce(v, hints[k], key, layers.source_of(key))
    return cls(**kwargs)


def walk(obj: Any, prefix: str = ""):
    """Yield (dotted key, dataclass instance) for `obj` and every nested config."""
    yield prefix, obj
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from walk(v, f"{prefix}.{f.name}" if prefix else f.name)


def check(cfg: Any, layers: Layers) -> None:
    """Cross-field checks of a built `Config`, then every config's own `check(cfg)` hook."""
    m = cfg.model
    for key, ok, msg in [
        ("model.dim", m.dim > 0, "must be positive"),
        ("model.num_layers", m.num_layers > 0, "must be positive"),
        ("model.num_heads", m.num_heads > 0, "must be positive"),
        (
            "data.seq_len",
            0 < cfg.data.seq_len <= m.max_seq_len,
            f"must be in 1..model.max_seq_len ({m.max_seq_len})",
        ),
        ("data.batch_size", cfg.data.batch_size > 0, "must be positive"),
        ("data.val_fraction", 0 < cfg.data.val_fraction < 1, "must be in (0, 1)"),
        ("train.steps", cfg.train.steps > 0, "must be positive"),
        ("train.grad_accum", cfg.train.grad_accum > 0, "must be positive"),
        ("train.warmup_steps", cfg.train.warmup_steps >= 0, "must be >= 0"),
        (
            "train.device",
            cfg.train.device in ("cpu", "cuda", "auto") or cfg.train.device.startswith("cuda:"),
            "must be cpu, cuda, cuda:N or auto",
        ),
    ]:
        if not ok:
            raise ConfigError(layers.source_of(key), key, msg)
    for key, node in walk(cfg):
        check = getattr(node, "check", None)
        if callable(check):
            try:
                check(cfg)
            except ValueError as e:
                raise ConfigError(layers.source_of(key), key, str(e)) from None
