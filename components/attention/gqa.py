"""Grouped-query attention: H query heads share G key/value heads (Ainslie et al. 2023, GQA).

MQA (Shazeer 2019) is `num_kv_heads: 1`; `num_kv_heads == num_heads` is MHA. RoPE is
interleaved over the full head dim, as in `mha`. Shapes (docs/design.md#shapes): B batch,
T new tokens, S cached positions, H query heads, G key/value heads (H/G query heads each),
K head dim, D model width. Cache: k and v, each (B, max_len, G, K): 2*G*K elements per token
per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ablate.interfaces import Attention, BuildContext
from ablate.nn.attention import grouped_causal_attention, update_cache
from ablate.nn.rope import apply_rope, rope_table
from ablate.registry import register


@register("attention", "gqa")
class GQA(Attention):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        num_kv_heads: int = 2  # G key/value heads; 1 = MQA, model.num_heads = MHA
        head_dim: int = 0  # per-head dim K; 0 = model.dim // model.num_heads

        def check(self, root) -> None:
            m = root.model
            if self.num_kv_heads <= 0 or m.num_heads % self.num_kv_heads:
                raise ValueError(
                    f"model.attention.num_kv_heads={self.num_kv_heads} must be positive and "
                    f"divide model.num_heads={m.num_heads} (each key/value head serves a "
                    "whole group of query heads)"
                )
            if self.head_dim == 0 and m.dim % m.num_heads:
                raise ValueError(
                    f"model.dim={m.dim} is not divisible by "
                    f"model.num_heads={m.num_heads}; set model.attention.head_dim"
                )
            if self.head_dim < 0 or (self.head_dim or m.dim // m.num_heads) % 2:
                raise ValueError(
                    "model.attention.head_dim must be positive and even (RoPE rotates pairs)"
                )

    def __init__(self, cfg: Config, ctx: BuildContext) -> None:
        super().__init__()
        m = ctx.model
        self.num_heads, self.num_kv_heads = m.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.head_dim or m.dim // m.num_heads
        self.wq = nn.Linear(m.dim, self.num_heads * self.head_dim, bias=False)
        self.wkv = nn.Linear(m.dim, 2 * self.num_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.num_heads * self.head_dim, m.dim, bias=False)
        self.register_buffer(
            "rope_TP", rope_table(self.head_dim, m.max_seq_len, m.rope_theta), persistent=False
        )

    def forward(
        self,
        x_BTD: torch.Tensor,
        *,
        start_pos: int = 0,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        B, T, _ = x_BTD.shape
        q_BTHK = self.wq(x_BTD).view(B, T, self.num_heads, self.head_dim)
        k_BTGK, v_BTGK = self.wkv(x_BTD).view(B, T, 2, self.num_kv_heads, self.head_dim).unbind(2)
        rot_TP = self.rope_TP[start_pos : start_pos + T]
        q_BTHK, k_BTGK = apply_rope(q_BTHK, rot_TP), apply_rope(k_BTGK, rot_TP)
        if cache is not None:
            k_BTGK, v_BTGK = update_cache(cache, start_pos, k=k_BTGK, v=v_BTGK)
        o_BHTK = grouped_causal_attention(
            q_BTHK.transpose(1, 2),
            k_BTGK.transpose(1, 2),
            v_BTGK.transpose(1, 2),
            start_pos,
            self.head_dim**-0.5,
        )
        return self.wo(o_BHTK.transpose(1, 2).reshape(B, T, -1))

    def new_cache(
        self, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        shape = (batch_size, max_len, self.num_kv_heads, self.head_dim)
        return {
            "k": torch.zeros(shape, dtype=dtype, device=device),
            "v": torch.zeros(shape, dtype=dtype, device=device),
        }
