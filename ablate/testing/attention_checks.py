"""Cached-decoding checks of attention components, on the layer alone.

A layer built from the default config (PyTorch's default init, unit-scale inputs, eval mode)
must give, through its KV cache, the outputs of its full causal forward: decoding token by
token and after a multi-token prefill then single steps, in a cache longer than needed.
Every config `cache_variants()` offers must load the same weights and match too.
Shapes: B batch, T time, D width.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ablate import registry
from ablate.interfaces import Attention, BuildContext
from ablate.testing.configs import TINY_MODEL, tiny_model_config
from ablate.testing.contract import Subject

ATOL, RTOL = 1e-5, 1e-4  # fp32: reordered sums differ by ~1e-7; a broken cache by ~1e-3
B, T, PREFILL = 2, 12, 5


def _layer(cfg: Any, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return registry.build(cfg, BuildContext(tiny_model_config(attention=cfg), 0)).eval()


def _inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randn(B, T, TINY_MODEL["dim"], generator=g)


def _decode(attn: Attention, x_BTD: torch.Tensor, prefill: int) -> torch.Tensor:
    """Outputs of a prefill of `prefill` tokens (none if 0), then one token per step."""
    cache = attn.new_cache(B, TINY_MODEL["max_seq_len"], attn.cache_dtype())
    outs = [attn(x_BTD[:, :prefill], start_pos=0, cache=cache)] if prefill else []
    outs += [attn(x_BTD[:, t : t + 1], start_pos=t, cache=cache) for t in range(prefill, T)]
    return torch.cat(outs, dim=1)


def _mismatch(got_BTD: torch.Tensor, want_BTD: torch.Tensor) -> tuple[int, float] | None:
    """First position where `got` leaves the tolerance around `want`, and its max abs diff."""
    diff_T = (got_BTD - want_BTD).abs().amax(dim=(0, 2))
    bad = (diff_T > ATOL + RTOL * want_BTD.abs().amax(dim=(0, 2))).nonzero()
    return None if len(bad) == 0 else (int(bad[0]), diff_T[bad[0]].item())


def _expect_same(
    s: Subject, got_BTD: torch.Tensor, want_BTD: torch.Tensor, what: str, ref: str = "full forward"
) -> None:
    s.expect(
        got_BTD.shape == want_BTD.shape,
        f"{what}: shape {tuple(got_BTD.shape)}, expected {tuple(want_BTD.shape)}",
    )
    if bad := _mismatch(got_BTD, want_BTD):
        s.fail(f"{what} differs from the {ref} at position {bad[0]} (max abs diff {bad[1]:.1e})")


def _expect_decoding(s: Subject, attn: Attention, x_BTD, full_BTD, prefix: str = "") -> None:
    _expect_same(s, _decode(attn, x_BTD, 0), full_BTD, f"{prefix}cached decoding")
    got_BTD = _decode(attn, x_BTD, PREFILL)
    _expect_same(s, got_BTD, full_BTD, f"{prefix}cached decoding after a {PREFILL}-token prefill")


@torch.no_grad()
def cached_decoding(s: Subject) -> None:
    """Decoding through the KV cache equals the full forward, step by step and after prefill."""
    attn = _layer(s.default_config())
    x_BTD = _inputs()
    _expect_decoding(s, attn, x_BTD, attn(x_BTD))


def _label(cfg: Any, variant: Any) -> str:
    changed = [
        f"{f.name}={getattr(variant, f.name)!r}"
        for f in dataclasses.fields(cfg)
        if getattr(variant, f.name) != getattr(cfg, f.name)
    ]
    return ", ".join(changed) or "(same config)"


@torch.no_grad()
def cache_variants(s: Subject) -> None:
    """Every alternative cache path (`cache_variants()`) computes what the default path does."""
    cfg = s.default_config()
    attn, x_BTD = _layer(cfg), _inputs()
    full_BTD = attn(x_BTD)
    for variant in s.cls.cache_variants(cfg):
        s.expect(type(variant) is type(cfg), f"cache_variants() gave a {type(variant).__name__}")
        label = _label(cfg, variant)
        alt = _layer(variant)
        try:
            alt.load_state_dict(attn.state_dict())
        except RuntimeError as e:
            s.fail(f"cache variant {label} does not take the default's weights: {e}")
        what = f"cache variant {label}: the full forward"
        _expect_same(s, alt(x_BTD), full_BTD, what, "default config's")
        _expect_decoding(s, alt, x_BTD, full_BTD, f"cache variant {label}: ")
