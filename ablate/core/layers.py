"""Raw config layers: YAML files and their `base:` chain, Hydra command-line overrides.

Layers stay plain mappings, each with its source, until `ablate.core.validate` turns the merged
result into dataclasses; the source lets every error name the file or the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A user error in a config: names the file, the dotted key and close matches."""

    def __init__(self, source: str, key: str, msg: str, matches: list[str] | None = None):
        self.source, self.key, self.msg, self.matches = source, key, msg, matches or []
        hint = f" (did you mean: {', '.join(self.matches)}?)" if self.matches else ""
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {msg}{hint}")


class Layers:
    """Raw config mappings in merge order, each with its source (for error messages).

    `ablate.core.slots.merge_layers` merges them.
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []

    def add(self, source: str, data: dict) -> None:
        self.items.append((source, data))

    def source_of(self, key: str) -> str:
        for source, data in reversed(self.items):
            node: Any = data
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
            else:
                return source
        return self.items[-1][0] if self.items else "<config>"


def read_yaml(path: Path) -> dict:
    """One YAML mapping, with YAML syntax errors reported against the file."""
    from omegaconf import OmegaConf

    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as e:  # omegaconf/yaml raise many types
        raise ConfigError(str(path), "", f"not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "the top level must be a mapping")
    return data


def load_layers(
    path: str | Path, layers: Layers | None = None, seen: tuple[Path, ...] = ()
) -> Layers:
    """Read `path` and, first, the chain of `base:` files it extends."""
    layers = layers or Layers()
    path = Path(path).resolve()
    if path in seen:
        raise ConfigError(str(path), "base", "circular `base:` chain")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(str(path), "base", "must be a path to a YAML file")
        load_layers(path.parent / base, layers, (*seen, path))
    layers.add(str(path), data)
    return layers


def parse_overrides(overrides: list[str], source: str = "command line") -> list[Any]:
    """Parse `key=value` strings with Hydra's own override grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    except HydraException as e:
        raise ConfigError(source, "", f"bad override: {e}") from None
    for ov in parsed:
        if ov.is_sweep_override():
            raise ConfigError(
                source, ov.key_or_group, f"'{ov.input_line}' is a sweep; put sweeps in a sweep file"
            )
    return parsed


def apply_overrides(data: dict, overrides: list[str], source: str = "command line") -> dict:
    """Apply Hydra-grammar overrides to a raw mapping: `k=v`, `+k=v`, `++k=v`, `~k`; resolve."""
    layers = Layers()
    layers.add(source, data)
    return resolve(apply_parsed(data, parse_overrides(overrides, source), source), layers)


def apply_parsed(data: dict, parsed: list[Any], source: str) -> dict:
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(data)
    for ov in parsed:
        key = ov.key_or_group
        exists = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False)
        exists = exists is not _ABSENT
        if ov.type == OverrideType.DEL:
            _delete(cfg, key, ov, exists, source)
        elif ov.type == OverrideType.ADD and exists:
            raise ConfigError(source, key, f"'{ov.input_line}': key exists; use ++ to force")
        else:
            OmegaConf.update(cfg, key, ov.value(), merge=True, force_add=True)
    return OmegaConf.to_container(cfg, resolve=False)  # `resolve` runs once all layers merged


_ABSENT = object()


def _delete(cfg: Any, key: str, ov: Any, exists: bool, source: str) -> None:
    """Hydra's `~key` (`~key=value`: only if it holds that value): the field's default applies."""
    import difflib

    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if not exists:
        siblings = [str(k) for k in node] if OmegaConf.is_dict(node) else []
        raise ConfigError(
            source,
            key,
            f"'{ov.input_line}': nothing to delete: no config layer sets {key}, so it already "
            "has its default",
            difflib.get_close_matches(leaf, siblings),
        )
    if ov.value() is not None and node[leaf] != ov.value():
        raise ConfigError(
            source, key, f"'{ov.input_line}': not deleted: {key} is {node[leaf]!r}, not that value"
        )
    node.pop(leaf)


def resolve(data: dict, layers: Layers) -> dict:
    """Resolve `${key}` interpolations once every layer is merged (files, sweep, command line).

    So `min_lr: ${train.lr}` in a file follows a `train.lr=...` given later on the command line.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    except OmegaConfBaseException as e:
        key = str(getattr(e, "full_key", "") or "")
        msg = str(e).splitlines()[0]
        raise ConfigError(layers.source_of(key), key, msg) from None


def override_layer(parsed: list[Any], values: bool = True) -> dict:
    """The nested mapping of the keys that parsed overrides set (deletions left out).

    With `values=False` every leaf is None: a layer that only marks where the keys came from.
    """
    from hydra.core.override_parser.types import OverrideType

    out: dict = {}
    for ov in parsed:
        if values and ov.type == OverrideType.DEL:
            continue
        node = out
        *parents, leaf = ov.key_or_group.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = ov.value() if values else None
    return out
