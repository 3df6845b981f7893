"""Parameter counts of a model built on the meta device: total and activated per token.

Every parameter is labelled by the innermost component holding it (its registry group:
attention, router, norm, ...), by the FFN's own `param_parts()` inside an FFN (dense, shared
or routed experts), or by the skeleton's attribute outside any component (`tok_emb` is the
embedding, `head` the output head). Parameters under an MTP component form the `mtp` section,
the rest the `main` one. A token activates every parameter it multiplies: an FFN part at the
fraction it reports, the embedding at one row (a lookup), everything else in full; a tied
head adds its use (V x D) with no parameters of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ablate.core.config import Config
from ablate.interfaces import FFN, MTP, Attention, Component, own_parameters

EMBEDDING = "embedding"  # the token-embedding table, read one row per token


@dataclass(frozen=True)
class Part:
    """One group of parameters: `section` main or mtp, `group` e.g. attention, ffn.dense."""

    section: str
    group: str
    params: int
    active: float  # parameters one token uses


def build_meta(cfg: Config) -> nn.Module:
    """The run's Transformer on the meta device: shapes only, no memory, no initialisation."""
    from ablate.core.model import Transformer

    if cfg.model.vocab_size <= 0:
        raise ValueError(
            "model.vocab_size=0 is taken from the tokenizer at train time; give it to inspect "
            "(e.g. model.vocab_size=256)"
        )
    with torch.device("meta"):
        return Transformer(cfg.model)


def count_params(model: nn.Module) -> list[Part]:
    """Parameters and activated parameters per (section, group), in module order."""
    acc: dict[tuple[str, str], list[float]] = {}
    seen: set[int] = set()  # unique: a tied head is counted once, as the embedding
    parted: set[int] = set()  # FFN parameters already counted through `param_parts()`

    def add(section: str, group: str, n: int, active: float) -> None:
        row = acc.setdefault((section, group), [0, 0.0])
        row[0] += n
        row[1] += active

    def visit(mod: nn.Module, section: str, group: str) -> None:
        section = "mtp" if isinstance(mod, MTP) else section
        group = mod.registry_group if isinstance(mod, Component) else group
        if isinstance(mod, FFN):
            own = [p for p in own_parameters(mod) if id(p) not in seen]
            parts = mod.param_parts()
            if sum(n for n, _ in parts.values()) != sum(p.numel() for p in own):
                raise ValueError(f"{type(mod).__name__}.param_parts() must cover its parameters")
            seen.update(id(p) for p in own)
            parted.update(id(p) for p in own)
            for name, (n, frac) in parts.items():
                add(section, f"{group}.{name}", n, n * frac)
        for p in mod.parameters(recurse=False):
            if id(p) in parted:
                continue
            if id(p) in seen:  # a shared weight (tied head): its use counts, not its size
                add(section, group, 0, 0 if group == EMBEDDING else p.numel())
                continue
            seen.add(id(p))
            add(section, group, p.numel(), p.shape[-1] if group == EMBEDDING else p.numel())
        for name, child in mod.named_children():
            visit(child, section, group or (EMBEDDING if name == "tok_emb" else name))

    visit(model, "main", "")
    return [Part(s, g, int(n), a) for (s, g), (n, a) in acc.items()]


def totals(parts: list[Part], section: str = "main") -> tuple[int, float]:
    """(parameters, activated per token) of one section."""
    rows = [p for p in parts if p.section == section]
    return sum(p.params for p in rows), sum(p.active for p in rows)


def kv_cache_bytes_per_token(model: nn.Module, dtype: torch.dtype) -> int:
    """Bytes one token adds to the trunk's KV caches (MTP blocks excluded), from real buffers."""
    in_mtp = {id(m) for c in model.modules() if isinstance(c, MTP) for m in c.modules()}
    return sum(
        m.kv_cache_bytes_per_token(dtype)
        for m in model.modules()
        if isinstance(m, Attention) and id(m) not in in_mtp
    )


def as_dicts(parts: list[Part]) -> list[dict]:
    return [dataclasses.asdict(p) for p in parts]
