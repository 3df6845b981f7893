"""Slot-aware layering: a layer that names another component for a slot starts that slot afresh.

Layers merge key by key, except at a component slot (`model.attention`, `model.ffn.router`,
...): when a layer names a component other than the one accumulated so far, the earlier
component's fields are dropped, so the slot holds the new component's defaults plus the fields
that layer and later ones give (Hydra's config-group semantics). What was dropped becomes a
note on the resolved config. The same holds inside a component, for nested slots. A slot
list (`slot_list`, e.g. `post.rewards`) is replaced as a whole by the layer that sets it.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

from ablate import registry
from ablate.core.layers import Layers


def slot(group: str, default: str) -> Any:
    """A dataclass field holding the config of a component from `group` (default `default`)."""
    return dataclasses.field(
        default_factory=lambda: registry.get(group, default).Config(), metadata={"group": group}
    )


def slot_list(group: str, defaults: tuple[str, ...]) -> Any:
    """A field holding a tuple of configs of components from `group` (YAML: a list of slots)."""
    return dataclasses.field(
        default_factory=lambda: tuple(registry.get(group, n).Config() for n in defaults),
        metadata={"group": group, "many": True},
    )


@dataclasses.dataclass(frozen=True)
class Dropped:
    """Fields a layer's component switch removed from the slot at `key`."""

    key: str
    old: str
    new: str
    fields: tuple[str, ...]

    def note(self, source: str) -> str:
        return (
            f"{source}: {self.key}: dropped {', '.join(self.fields)} from {self.old} "
            f"(switched to {self.new})"
        )


def _as_slot(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value  # shorthand `attention: mla`


def _both_mappings(a: Any, b: Any) -> bool:
    return isinstance(a, dict) and isinstance(b, dict)


def _component(group: str, name: Any) -> type | None:
    try:
        return registry.get(group, name)
    except (ValueError, TypeError):  # unknown or unhashable name: validation reports it
        return None


def _switch_slot(acc: dict, layer: dict, k: str, f: dataclasses.Field, key: str) -> list[Dropped]:
    acc[k], layer[k] = old, new = _as_slot(acc[k]), _as_slot(layer[k])
    if not _both_mappings(old, new):
        return []  # not a mapping: validation reports it
    old_name = old.get("name", registry.name_of(f.default_factory())[1])
    new_name = new.get("name", old_name)
    if new_name != old_name:
        acc[k] = {}
        fields = tuple(sorted(str(x) for x in old if x != "name"))
        return [Dropped(key, str(old_name), str(new_name), fields)] if fields else []
    cls = _component(f.metadata["group"], old_name)
    return switch_slots(old, new, cls.Config, key) if cls else []


def switch_slots(acc: dict, layer: dict, schema: type, prefix: str = "") -> list[Dropped]:
    """Prepare merging `layer` onto `acc` (both raw mappings for dataclass `schema`), in place.

    Every slot whose component `layer` switches is emptied in `acc`; slot shorthands in both
    become `{name: ...}` mappings. Returns what was dropped.
    """
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    dropped: list[Dropped] = []
    for k in layer:
        f = fields.get(k)
        if f is None or k not in acc:
            continue
        key = f"{prefix}.{k}" if prefix else str(k)
        if f.metadata.get("many"):
            continue  # a list merges as a whole (OmegaConf replaces lists)
        if "group" in f.metadata:
            dropped += _switch_slot(acc, layer, k, f, key)
        elif dataclasses.is_dataclass(hints[k]) and _both_mappings(acc[k], layer[k]):
            dropped += switch_slots(acc[k], layer[k], hints[k], key)
    return dropped


def merge_layers(layers: Layers, schema: type) -> tuple[dict, list[str]]:
    """Merge `layers` in order (slot-aware, then OmegaConf), returning the mapping and notes."""
    from omegaconf import OmegaConf

    out: dict = {}
    notes: list[str] = []
    for source, data in layers.items:
        data = copy.deepcopy(data)
        notes += [d.note(source) for d in switch_slots(out, data, schema)]
        merged = OmegaConf.merge(OmegaConf.create(out), OmegaConf.create(data))
        out = OmegaConf.to_container(merged, resolve=False)
    return out, notes  # interpolations stay: `layers.resolve` runs after the command line
