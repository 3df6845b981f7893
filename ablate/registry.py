"""Component registry: `@register(group, name)` on a class with a nested `Config` dataclass.

Groups are a closed set; each group has an interface base class (see `ablate.interfaces`).
A config instance identifies its component: every registered class owns a distinct `Config`
class, so `name_of(cfg)` recovers the registry name from a config alone.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

GROUPS = (
    "attention",
    "ffn",
    "norm",
    "router",
    "mtp",
    "precision",
    "dataset",
    "tokenizer",
    "posttrain",
    "reward",
)
ENTRY_POINT_GROUP = "ablate.components"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

_classes: dict[str, dict[str, type]] = {g: {} for g in GROUPS}
_by_config: dict[type, tuple[str, str]] = {}
_bootstrapped = False


def _check_group(group: str) -> None:
    if group not in _classes:
        raise ValueError(f"unknown component group {group!r}; groups are {', '.join(GROUPS)}")


def register(group: str, name: str) -> Callable[[type], type]:
    """Class decorator adding a component to `group` under `name`.

    Fails loudly on an unknown group, a bad name, a wrong base class, a missing or shared
    `Config` dataclass and a duplicate name: a silent overwrite would corrupt an ablation.
    """
    _check_group(group)
    if not _NAME_RE.match(name):
        raise ValueError(f"component name {name!r} must be lowercase snake_case")

    def deco(cls: type) -> type:
        from ablate.interfaces import BASES

        base = BASES[group]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{group}/{name}: {cls!r} must subclass {base.__qualname__}")
        config_cls = cls.__dict__.get("Config")
        if config_cls is None or not dataclasses.is_dataclass(config_cls):
            raise TypeError(
                f"{group}/{name}: {cls.__qualname__} needs its own nested "
                "`Config` dataclass (subclass the parent's Config to reuse fields)"
            )
        params = getattr(config_cls, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise TypeError(f"{group}/{name}: {cls.__qualname__}.Config must be frozen")
        if name in _classes[group]:
            old = _classes[group][name]
            raise ValueError(
                f"duplicate registration {group}/{name}: already taken by "
                f"{old.__module__}.{old.__qualname__}"
            )
        if config_cls in _by_config:
            raise TypeError(
                f"{group}/{name}: Config class already belongs to "
                f"{'/'.join(_by_config[config_cls])}"
            )
        _classes[group][name] = cls
        _by_config[config_cls] = (group, name)
        cls.registry_group, cls.registry_name = group, name
        return cls

    return deco


def unregister(group: str, name: str) -> None:
    """Remove a registration (tests and interactive use)."""
    cls = _classes[group].pop(name)
    _by_config.pop(cls.__dict__["Config"], None)


def bootstrap() -> None:
    """Import the shipped components and any installed entry-point plugins, once."""
    global _bootstrapped
    if _bootstrapped:
        return
    _bootstrapped = True
    importlib.import_module("components")
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def load_plugins(modules: Iterable[str]) -> None:
    """Import third-party component modules named in a config's `plugins:` list."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ValueError(f"plugin module {mod!r} could not be imported: {e}") from e


def get(group: str, name: str) -> type:
    """The class registered as `group/name` (ValueError with close matches if absent)."""
    bootstrap()
    _check_group(group)
    try:
        return _classes[group][name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _classes[group], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown {group} {name!r}{hint} (known: "
            f"{', '.join(sorted(_classes[group])) or 'none'})"
        ) from None


def names(group: str, pattern: str = "*") -> list[str]:
    """Sorted registered names in `group` matching a glob pattern."""
    bootstrap()
    _check_group(group)
    return sorted(n for n in _classes[group] if fnmatch.fnmatchcase(n, pattern))


def name_of(cfg: Any) -> tuple[str, str]:
    """(group, name) of the component a config instance belongs to."""
    bootstrap()
    return _by_config[type(cfg)]


def is_config(cls: type) -> bool:
    """Whether `cls` is the `Config` of a registered component."""
    bootstrap()
    return cls in _by_config


def name_of_class(config_cls: type) -> tuple[str, str]:
    """(group, name) of the component owning a `Config` class."""
    return _by_config[config_cls]


def build(cfg: Any, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the component that `cfg` configures: `cls(cfg, *args, **kwargs)`."""
    group, name = name_of(cfg)
    return _classes[group][name](cfg, *args, **kwargs)
