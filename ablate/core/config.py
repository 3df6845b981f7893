"""Typed run configuration: frozen dataclasses, YAML layering (`base:`), Hydra overrides.

A component slot (`model.attention`) holds the chosen component's own `Config` instance; in
YAML it is a mapping with `name` plus that component's fields. `to_dict` gives the canonical
form whose hash identifies a trial.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ablate import registry


class ConfigError(ValueError):
    """A user error in a config: names the file, the dotted key and close matches."""

    def __init__(self, source: str, key: str, msg: str, matches: list[str] | None = None):
        self.source, self.key, self.msg, self.matches = source, key, msg, matches or []
        hint = f" (did you mean: {', '.join(self.matches)}?)" if self.matches else ""
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {msg}{hint}")


def slot(group: str, default: str) -> Any:
    """A dataclass field holding the config of a component from `group` (default `default`)."""
    return field(
        default_factory=lambda: registry.get(group, default).Config(), metadata={"group": group}
    )


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    vocab_size: int = 0  # 0: taken from the tokenizer
    dim: int = 128  # model width D
    num_layers: int = 4
    num_heads: int = 4  # attention heads (components may define their own head dims)
    max_seq_len: int = 256  # longest sequence the model is built for (RoPE table, caches)
    rope_theta: float = 10000.0
    tie_embeddings: bool = True  # share the token embedding with the output head
    init_std: float = 0.02  # N(0, std) for every Linear and Embedding weight
    attention: Any = slot("attention", "mha")
    ffn: Any = slot("ffn", "dense")
    norm: Any = slot("norm", "rmsnorm")
    mtp: Any = slot("mtp", "none")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    dataset: Any = slot("dataset", "embedded")
    tokenizer: Any = slot("tokenizer", "char")
    seq_len: int = 64  # tokens per training window
    batch_size: int = 12  # windows per micro-batch
    val_fraction: float = 0.1  # tail of the corpus held out for validation
    eval_windows: int = 0  # held-out windows per evaluation; 0 = the whole validation split


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    steps: int = 200  # optimizer steps
    seed: int = 0
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # cosine floor
    warmup_steps: int = 20
    weight_decay: float = 0.1  # on matrices only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    grad_accum: int = 1  # micro-batches per optimizer step
    eval_every: int = 100  # steps between evaluations (the last step is always evaluated)
    log_every: int = 10
    checkpoint_every: int = 100  # steps between checkpoints; 0 = only at the end
    loss_cap: float = 20.0  # a training loss above this after warm-up means diverged
    device: str = "cpu"  # "cpu", "cuda", or "auto"
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    precision: Any = slot("precision", "fp32")


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    wandb: Literal["offline", "online", "disabled"] = "offline"
    project: str = "ablate"
    entity: str = ""  # W&B entity; empty = the user's default


@dataclass(frozen=True, kw_only=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    plugins: tuple[str, ...] = ()  # importable modules registering third-party components


# ----------------------------------------------------------------------------- raw layers


class Layers:
    """Raw config mappings in merge order, each with its source (for error messages)."""

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

    def merged(self) -> dict:
        from omegaconf import OmegaConf

        out = OmegaConf.create({})
        for _, data in self.items:
            out = OmegaConf.merge(out, OmegaConf.create(data))
        return OmegaConf.to_container(out, resolve=True)


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
    """Apply Hydra-grammar overrides to a raw mapping: `k=v`, `+k=v`, `++k=v`, `~k`."""
    return _apply_parsed(data, parse_overrides(overrides, source), source)


def _apply_parsed(data: dict, parsed: list[Any], source: str) -> dict:
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(data)
    for ov in parsed:
        key = ov.key_or_group
        exists = OmegaConf.select(cfg, key, default="__missing__") != "__missing__"
        if ov.type == OverrideType.DEL:
            if not exists:
                raise ConfigError(source, key, f"'{ov.input_line}': nothing to delete")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            node.pop(leaf)
        elif ov.type == OverrideType.ADD and exists:
            raise ConfigError(source, key, f"'{ov.input_line}': key exists; use ++ to force")
        else:
            OmegaConf.update(cfg, key, ov.value(), merge=True, force_add=True)
    return OmegaConf.to_container(cfg, resolve=True)


# ----------------------------------------------------------------------------- validation


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


def _walk(obj: Any, prefix: str = ""):
    """Yield (dotted key, dataclass instance) for `obj` and every nested config."""
    yield prefix, obj
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from _walk(v, f"{prefix}.{f.name}" if prefix else f.name)


def _check(cfg: Config, layers: Layers) -> None:
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
    for key, node in _walk(cfg):
        check = getattr(node, "check", None)
        if callable(check):
            try:
                check(cfg)
            except ValueError as e:
                raise ConfigError(layers.source_of(key), key, str(e)) from None


def from_layers(layers: Layers, overrides: list[str] = ()) -> Config:
    """Merge layers, apply overrides, load plugins, validate into a `Config`."""
    data = layers.merged()
    if overrides:
        parsed = parse_overrides(list(overrides))
        data = _apply_parsed(data, parsed, "command line")
        touched: dict = {}  # the keys the overrides set, so errors name the command line
        for ov in parsed:
            node = touched
            *parents, leaf = ov.key_or_group.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = None
        layers.add("command line", touched)
    plugins = data.get("plugins", ())
    if plugins:
        try:
            registry.load_plugins(plugins)
        except ValueError as e:
            raise ConfigError(layers.source_of("plugins"), "plugins", str(e)) from None
    cfg = build_dataclass(Config, data, "", layers)
    _check(cfg, layers)
    return cfg


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Load a YAML config (and its `base:` chain), apply overrides and validate."""
    return from_layers(load_layers(path), overrides)


def from_dict(data: dict, source: str = "<dict>") -> Config:
    """Validate a plain mapping (e.g. a canonical dict) into a `Config`."""
    layers = Layers()
    layers.add(source, data)
    return from_layers(layers)


# ----------------------------------------------------------------------------- canonical form


def to_dict(obj: Any) -> Any:
    """Canonical plain form: component slots become `{name, **fields}`, tuples lists."""
    if dataclasses.is_dataclass(obj):
        out = {}
        if registry.is_config(type(obj)):
            out["name"] = registry.name_of(obj)[1]
        for f in dataclasses.fields(obj):
            out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def config_hash(cfg: Config) -> str:
    """Stable 12-hex id of everything that can change a result (tracking excluded)."""
    d = to_dict(cfg)
    d.pop("tracking")
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def to_yaml(cfg: Config) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def replace(cfg: Any, **changes: Any) -> Any:
    """`dataclasses.replace` re-exported for frozen configs."""
    return dataclasses.replace(cfg, **changes)
