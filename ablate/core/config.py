"""Typed run configuration: frozen dataclasses, loading and the canonical form.

A component slot (`model.attention`) holds the chosen component's own `Config` instance; in
YAML it is a mapping with `name` plus that component's fields. `to_dict` gives the canonical
form whose hash identifies a trial. Raw layering (`base:`, Hydra overrides) lives in
`ablate.core.layers`, validation into dataclasses in `ablate.core.validate`; their public names
are importable from here too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ablate import registry
from ablate.core.eval_config import EvalConfig
from ablate.core.fingerprint import code_fingerprints
from ablate.core.layers import (
    ConfigError,
    Layers,
    apply_overrides,
    apply_parsed,
    load_layers,
    override_layer,
    parse_overrides,
    read_yaml,
    resolve,
)
from ablate.core.scale import apply_scale
from ablate.core.slots import merge_layers, slot, slot_list, switch_slots
from ablate.core.validate import build_dataclass, check
from ablate.posttrain.config import PostConfig

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "Layers",
    "ModelConfig",
    "PostConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "build_dataclass",
    "code_fingerprints",
    "config_hash",
    "from_dict",
    "from_layers",
    "load_config",
    "load_layers",
    "parse_overrides",
    "read_yaml",
    "replace",
    "slot",
    "slot_list",
    "to_dict",
    "to_yaml",
]


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
    val_fraction: float = 0.1  # share of the corpus held out for validation
    val_chunks: int = 10  # contiguous validation chunks, spread evenly over the corpus
    eval_windows: int = 0  # held-out windows per evaluation; 0 = the whole validation split
    eval_stride: int = 0  # sliding-window evaluation step in tokens; 0 = non-overlapping windows

    def check(self, cfg: Config) -> None:
        if self.val_chunks < 1:
            raise ValueError(f"data.val_chunks={self.val_chunks}: must be >= 1")
        if not 0 <= self.eval_stride <= self.seq_len:
            raise ValueError(
                f"data.eval_stride={self.eval_stride}: must be 0 (non-overlapping windows) or "
                f"1 to seq_len ({self.seq_len})"
            )


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
    # One trial over the launcher's processes (torchrun; `ablate train --nproc N`): data.batch_size
    # is the global batch, split over the ranks. Not part of the trial id (ablate.core.distributed).
    distributed: Literal["none", "ddp", "fsdp"] = "none"
    # torch intra-op threads; part of the identity (MoE and bf16 results differ by thread
    # count), so never taken from the machine or --workers; 0 is read as 1
    threads: int = 1
    # weights to start from: a trial directory or a local HF DeepSeek checkpoint (`ablate
    # import-hf`); "" = the seed's random init. In the trial id through the weights' sha256.
    init_from: str = ""
    compile: bool = False  # torch.compile the training forward (evaluation runs uncompiled)
    # AdamW's kernels (ablate.core.runtime): "auto" = fused on CUDA, foreach on CPU; "for" = the
    # per-parameter loop. Part of the trial id only where it differs from what auto picks.
    optimizer_impl: Literal["auto", "fused", "foreach", "for"] = "auto"
    tf32: bool = True  # TF32 tensor cores for fp32 matmuls and convolutions on CUDA; no-op on CPU
    precision: Any = slot("precision", "fp32")


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    wandb: Literal["offline", "online", "disabled"] = "offline"
    project: str = "ablate"
    entity: str = ""  # W&B entity; empty = the user's default
    init_timeout: float = 5.0  # seconds wandb.init may take before tracking is skipped

    def check(self, cfg: Config) -> None:
        """W&B's rules for a project name (it rejects others only when a run starts)."""
        bad = set("/\\#?%:") | {c for c in self.project if not c.isprintable()}
        if not 0 < len(self.project) <= 128 or bad & set(self.project):
            raise ValueError(
                f"tracking.project={self.project!r}: a W&B project name is 1 to 128 "
                "printable characters, none of / \\ # ? % :"
            )
        if not self.init_timeout > 0:
            raise ValueError(f"tracking.init_timeout={self.init_timeout}: must be > 0 seconds")


@dataclass(frozen=True, kw_only=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    post: PostConfig = field(default_factory=PostConfig)  # post-training stages after `train`
    eval: EvalConfig = field(default_factory=EvalConfig)  # measurements after training
    plugins: tuple[str, ...] = ()  # importable modules registering third-party components
    # What layering dropped where a later layer switched a slot's component (`ablate.core.slots`).
    # A record, not a setting: it is left out of the trial id and of equality.
    notes: tuple[str, ...] = field(default=(), compare=False)


# ----------------------------------------------------------------------------- loading


def from_layers(layers: Layers, overrides: list[str] = ()) -> Config:
    """Merge layers, apply overrides, load plugins, validate into a `Config`."""
    data, notes = merge_layers(layers, Config)
    if overrides:
        parsed = parse_overrides(list(overrides))
        dropped = switch_slots(data, override_layer(parsed), Config)
        notes += [d.note("command line") for d in dropped]
        data = apply_parsed(data, parsed, "command line")
        # the keys the overrides set, so that errors name the command line
        layers.add("command line", override_layer(parsed, values=False))
    data = resolve(data, layers)
    data, scaled = apply_scale(data, layers)  # `scale:` derives a variant, before validation
    notes += scaled
    plugins = data.get("plugins", ())
    if plugins:
        try:
            registry.load_plugins(plugins)
        except ValueError as e:
            raise ConfigError(layers.source_of("plugins"), "plugins", str(e)) from None
    cfg = build_dataclass(Config, data, "", layers)
    if cfg.train.threads == 0:  # resolved here, so config.yaml records the count that ran
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=1))
    check(cfg, layers)
    return dataclasses.replace(cfg, notes=cfg.notes + tuple(notes)) if notes else cfg


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
        if isinstance(obj, Config) and not obj.notes:
            out.pop("notes")  # the canonical form of a config without notes stays as it was
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def config_hash(cfg: Config) -> str:
    """Stable 12-hex id of everything that can change a result (`ablate.core.identity`).

    Tracking, notes and operational settings are left out; the data fingerprint is added, and
    out-of-tree components (plugins) add their module file's hash under `code`; shipped ones,
    covered by the git revision, add nothing.
    """
    from ablate.core.identity import identity_hash

    return identity_hash(to_dict(cfg), code_fingerprints(cfg))


def to_yaml(cfg: Config) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def replace(cfg: Any, **changes: Any) -> Any:
    """`dataclasses.replace` re-exported for frozen configs."""
    return dataclasses.replace(cfg, **changes)
