"""Multi-head attention with interleaved RoPE over the full head dim (Vaswani et al. 2017).

Shapes (docs/design.md#shapes): B batch, T new tokens, S cached positions, H heads, K head dim,
D model width.
Cache: k and v, each (B, max_len, H, K): 2*H*K elements per token per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ablate.interfaces import Attention, BuildContext
from ablate.nn.attention import causal_attention, update_cache
from ablate.nn.rope import apply_rope, rope_table
from ablate.registry import register


@register("attention", "mha")
class MHA(Attention):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        head_dim: int = 0  # per-head dim K; 0 = model.dim // model.num_heads

        def check(self, root) -> None:
            m = root.model
            if self.head_dim == 0 and m.dim % m.num_heads:
                raise ValueError(
                    f"model.dim={m.dim} is not divisible by model.num_heads={m.num_heads}"
                )
            if self.head_dim < 0 or (self.head_dim or m.dim // m.num_heads) % 2:
                raise ValueError("head dim must be positive and even (RoPE rotates pairs)")

    def __init__(self, cfg: Config, ctx: BuildContext) -> None:
        super().__init__()
        m = ctx.model
        self.num_heads = m.num_heads
        self.head_dim = cfg.head_dim or m.dim // m.num_heads
        inner = self.num_heads * self.head_dim
        self.wqkv = nn.Linear(m.dim, 3 * inner, bias=False)
        self.wo = nn.Linear(inner, m.dim, bias=False)
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
        q_BTHK, k_BTHK, v_BTHK = (
            self.wqkv(x_BTD).view(B, T, 3, self.num_heads, self.head_dim).unbind(2)
        )
        rot_TP = self.rope_TP[start_pos : start_pos + T]
        q_BTHK, k_BTHK = apply_rope(q_BTHK, rot_TP), apply_rope(k_BTHK, rot_TP)
        if cache is not None:
            k_BTHK, v_BTHK = update_cache(cache, start_pos, k=k_BTHK, v=v_BTHK)
        o_BHTK = causal_attention(
            q_BTHK.transpose(1, 2),
            k_BTHK.transpose(1, 2),
            v_BTHK.transpose(1, 2),
            start_pos,
            self.head_dim**-0.5,
        )
        return self.wo(o_BHTK.transpose(1, 2).reshape(B, T, -1))

    def new_cache(
        self, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        shape = (batch_size, max_len, self.num_heads, self.head_dim)
        return {
            "k": torch.zeros(shape, dtype=dtype, device=device),
            "v": torch.zeros(shape, dtype=dtype, device=device),
        }
