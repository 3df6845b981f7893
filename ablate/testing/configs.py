"""Tiny configs the checks build components from, and the config round-trip check.

Model components sit in a tiny Transformer (`tiny_model_config`); a router sits inside the
first registered FFN with a router slot. Datasets are checked from their default config with
`download=False` where that field exists and, where the default config does not validate, an
empty `path` pointed at a sample text file: checks never touch the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ablate import registry
from ablate.core.config import (
    Config,
    DataConfig,
    ModelConfig,
    PostConfig,
    TrainConfig,
    from_dict,
    to_dict,
    to_yaml,
)
from ablate.testing.contract import CheckSkipped, Subject

TINY_MODEL = dict(vocab_size=37, dim=64, num_layers=2, num_heads=4, max_seq_len=32)
TINY_SEQ_LEN = 16
MODEL_GROUPS = ("attention", "ffn", "norm", "mtp")
DATA_GROUPS = ("dataset", "tokenizer")
POST_GROUPS = {"posttrain": "stages", "reward": "rewards"}  # group -> its `post` slot list
POST_NEW_TOKENS = 16  # completion tokens sampled in checks (prompt + 16 <= max_seq_len)
# Text for datasets and tokenizers: several lines, punctuation and non-ASCII characters.
SAMPLE_TEXT = (
    "def greet(name):\n    return f'Hello, {name}!'\n\n"
    "Naïve café owners serve crème brûlée — 3 × 4 = 12.\n"
    "The quick brown fox jumps over the lazy dog.\n"
) * 4


def tiny_model_config(**changes: Any) -> ModelConfig:
    """A 2-layer, 64-wide model over a 37-token vocabulary, with `changes` applied."""
    return dataclasses.replace(ModelConfig(**TINY_MODEL), **changes)


def _routed_ffns() -> Iterator[tuple[type, str]]:
    """(config class, router field name) of each registered FFN with a `router` slot."""
    for name in registry.names("ffn"):
        cfg_cls = registry.get("ffn", name).Config
        for f in dataclasses.fields(cfg_cls):
            if f.metadata.get("group") == "router":
                yield cfg_cls, f.name


def router_host(router_cfg: Any) -> Any:
    """Default config of the first FFN with a `router` slot, holding `router_cfg`."""
    for cfg_cls, key in _routed_ffns():
        return dataclasses.replace(cfg_cls(), **{key: router_cfg})
    raise CheckSkipped("no FFN with a router slot is registered to host the router")


def routed_ffn_config() -> Any | None:
    """Default config of the first FFN with a `router` slot; None when none is registered."""
    return next((cfg_cls() for cfg_cls, _ in _routed_ffns()), None)


def task_host() -> Any:
    """Default config of the first registered dataset that is a verifiable task."""
    from ablate.posttrain.bases import Task

    for name in registry.names("dataset"):
        if issubclass(registry.get("dataset", name), Task):
            return registry.get("dataset", name).Config()
    raise CheckSkipped("no task dataset is registered to host the check")


def root_config(group: str, cfg: Any) -> Config:
    """A whole tiny run config with `cfg` in its group's slot (a router inside its host FFN)."""
    if group == "router":
        group, cfg = "ffn", router_host(cfg)
    model = tiny_model_config(**({group: cfg} if group in MODEL_GROUPS else {}))
    data = DataConfig(seq_len=TINY_SEQ_LEN, **({group: cfg} if group in DATA_GROUPS else {}))
    train = TrainConfig(**({"precision": cfg} if group == "precision" else {}))
    post = PostConfig()
    if group in POST_GROUPS:  # on a task dataset, completions within the tiny model's length
        data = dataclasses.replace(data, dataset=task_host())
        post = PostConfig(**{POST_GROUPS[group]: (cfg,)}, max_new_tokens=POST_NEW_TOKENS)
    return Config(model=model, data=data, train=train, post=post)


def _validates(group: str, cfg: Any) -> bool:
    check = getattr(cfg, "check", None)
    if not callable(check):
        return True
    try:
        check(root_config(group, cfg))
    except ValueError:
        return False
    return True


def sample_config(s: Subject, tmp_dir: Path) -> Any:
    """The config `s` is checked with: its default, made offline-safe for datasets."""
    cfg = s.default_config()
    if s.group != "dataset":
        return cfg
    names = {f.name for f in dataclasses.fields(cfg)}
    if "download" in names:
        cfg = dataclasses.replace(cfg, download=False)
    if "path" in names and not cfg.path and not _validates(s.group, cfg):
        path = Path(tmp_dir) / "sample.txt"
        path.write_text(SAMPLE_TEXT, encoding="utf-8")
        cfg = dataclasses.replace(cfg, path=str(path))
    return cfg


def config_round_trip(s: Subject) -> None:
    """The config validates in a whole run config and survives the canonical dict and YAML."""
    import tempfile

    from omegaconf import OmegaConf

    with tempfile.TemporaryDirectory() as tmp:
        full = root_config(s.group, sample_config(s, Path(tmp)))
        try:
            again = from_dict(to_dict(full))
        except ValueError as e:
            s.fail(f"default config does not validate: {e}")
        s.expect(again == full, "config changes through its canonical dict (to_dict/from_dict)")
        back = from_dict(OmegaConf.to_container(OmegaConf.create(to_yaml(full))))
        s.expect(back == full, "config changes through YAML")
