"""Multi-head Latent Attention (DeepSeek-V2 §2.1, DeepSeek-V3 §2.1.1); docs/design.md#mla.

Keys and values come from one low-rank latent c^KV = kv_norm(W^DKV h) (d_c); a single RoPE key
k^R = RoPE(W^KR h) (d_R) is shared by all heads; queries optionally go through their own
low-rank latent with q_norm. Per head: q = [q^C; q^R], k = [W^UK c^KV; k^R], v = W^UV c^KV,
softmax scale 1/sqrt(d_h + d_R). Two cached-decoding paths: `naive` caches the
materialised per-head k (H, d_h+d_R) and v (H, d_v); `absorbed` caches only the latent and the
rotated k^R, folding W^UK into the query and W^UV into the output. Training runs the naive
(materialised) form with SDPA. Shapes (docs/design.md#shapes): B batch, T new tokens, S cached
positions, H heads, Z = d_h (qk_nope_head_dim), R = d_R (qk_rope_head_dim), U = d_v (v_head_dim),
C = d_c (kv_lora_rank), K query/key width (Z + R naive, C + R absorbed), D model width.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ablate import registry
from ablate.interfaces import Attention, BuildContext
from ablate.nn.attention import grouped_causal_attention, update_cache
from ablate.nn.rope import apply_rope, rope_table, yarn_freqs, yarn_softmax_multiplier
from ablate.registry import register


@register("attention", "mla")
class MLA(Attention):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        q_lora_rank: int = 0  # d'_c query latent; 0 = no query compression (one wq)
        kv_lora_rank: int = 64  # d_c: the cached key/value latent
        qk_nope_head_dim: int = 32  # d_h: per-head query/key dims without RoPE
        qk_rope_head_dim: int = 16  # d_R: RoPE dims (per-head query, one shared key); even
        v_head_dim: int = 32  # d_v: per-head value dims
        cache_impl: Literal["naive", "absorbed"] = "absorbed"  # cached-decoding path
        yarn: bool = False  # YaRN on the RoPE dims; applies only if max_seq_len > original_seq_len
        rope_factor: float = 40.0  # YaRN s: context-extension factor
        original_seq_len: int = 4096  # YaRN L_orig: context the RoPE was trained at
        beta_fast: float = 32.0  # YaRN: rotations above which a pair keeps its frequency
        beta_slow: float = 1.0  # YaRN: rotations below which a pair is divided by s
        mscale: float = 1.0  # YaRN attention-temperature coefficient

        def check(self, root) -> None:
            p = "model.attention"
            for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                if getattr(self, name) <= 0:
                    raise ValueError(f"{p}.{name}={getattr(self, name)} must be positive")
            if self.q_lora_rank < 0:
                raise ValueError(
                    f"{p}.q_lora_rank={self.q_lora_rank} must be >= 0 (0 = no query compression)"
                )
            if self.qk_rope_head_dim % 2:
                raise ValueError(
                    f"{p}.qk_rope_head_dim={self.qk_rope_head_dim} must be even "
                    "(RoPE rotates pairs)"
                )
            if self.yarn and (self.rope_factor <= 1 or self.original_seq_len <= 0):
                raise ValueError(
                    f"{p}.rope_factor must be > 1 and {p}.original_seq_len positive when YaRN is on"
                )

    @classmethod
    def cache_variants(cls, cfg: Config) -> list[Config]:
        """The other `cache_impl` paths: same weights, same outputs (docs/design.md#mla)."""
        impls = typing.get_args(typing.get_type_hints(cls.Config)["cache_impl"])
        return [dataclasses.replace(cfg, cache_impl=i) for i in impls if i != cfg.cache_impl]

    def __init__(self, cfg: Config, ctx: BuildContext) -> None:
        super().__init__()
        m = ctx.model
        self.cfg, self.num_heads = cfg, m.num_heads
        H, Z, R, U, C = (
            m.num_heads,
            cfg.qk_nope_head_dim,
            cfg.qk_rope_head_dim,
            cfg.v_head_dim,
            cfg.kv_lora_rank,
        )
        if cfg.q_lora_rank == 0:
            self.wq = nn.Linear(m.dim, H * (Z + R), bias=False)
        else:
            self.wq_a = nn.Linear(m.dim, cfg.q_lora_rank, bias=False)  # W^DQ
            self.q_norm = registry.build(m.norm, cfg.q_lora_rank)  # model.norm
            self.wq_b = nn.Linear(cfg.q_lora_rank, H * (Z + R), bias=False)  # [W^UQ; W^QR]
        self.wkv_a = nn.Linear(m.dim, C + R, bias=False)  # [W^DKV; W^KR]
        self.kv_norm = registry.build(m.norm, C)  # the latent only, never the RoPE key
        self.wkv_b = nn.Linear(C, H * (Z + U), bias=False)  # per head [W^UK_i; W^UV_i]
        self.wo = nn.Linear(H * U, m.dim, bias=False)
        self.softmax_scale = (Z + R) ** -0.5
        freqs_P = None
        if cfg.yarn and m.max_seq_len > cfg.original_seq_len:
            freqs_P = yarn_freqs(
                R, m.rope_theta, cfg.rope_factor, cfg.original_seq_len, cfg.beta_fast, cfg.beta_slow
            )
            self.softmax_scale *= yarn_softmax_multiplier(cfg.rope_factor, cfg.mscale)
        elif cfg.yarn:
            warnings.warn(
                f"MLA: YaRN skipped, model.max_seq_len={m.max_seq_len} <= "
                f"original_seq_len={cfg.original_seq_len}",
                stacklevel=2,
            )
        self.register_buffer(
            "rope_TP", rope_table(R, m.max_seq_len, m.rope_theta, freqs_P), persistent=False
        )

    def forward(
        self,
        x_BTD: torch.Tensor,
        *,
        start_pos: int = 0,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        B, T, _ = x_BTD.shape
        H, Z, R, C = (
            self.num_heads,
            self.cfg.qk_nope_head_dim,
            self.cfg.qk_rope_head_dim,
            self.cfg.kv_lora_rank,
        )
        rot_TP = self.rope_TP[start_pos : start_pos + T]
        q_BTHK = (
            self.wq(x_BTD)
            if self.cfg.q_lora_rank == 0
            else self.wq_b(self.q_norm(self.wq_a(x_BTD)))
        ).view(B, T, H, Z + R)
        q_nope_BTHZ, q_pe_BTHR = q_BTHK.split((Z, R), dim=-1)
        q_pe_BTHR = apply_rope(q_pe_BTHR, rot_TP)
        latent_BTC, k_pe_BTR = self.wkv_a(x_BTD).split((C, R), dim=-1)
        c_BTC = self.kv_norm(latent_BTC)
        k_pe_BTR = apply_rope(k_pe_BTR.unsqueeze(2), rot_TP).squeeze(2)  # one key for all heads
        if cache is not None and self.cfg.cache_impl == "absorbed":
            o_BTHU = self._absorbed(q_nope_BTHZ, q_pe_BTHR, c_BTC, k_pe_BTR, start_pos, cache)
        else:
            o_BTHU = self._naive(q_nope_BTHZ, q_pe_BTHR, c_BTC, k_pe_BTR, start_pos, cache)
        return self.wo(o_BTHU.flatten(2))

    def _naive(self, q_nope_BTHZ, q_pe_BTHR, c_BTC, k_pe_BTR, start_pos, cache):
        """Materialise per-head k = [W^UK c; k^R] and v = W^UV c, then SDPA (training form)."""
        B, T, H, Z = q_nope_BTHZ.shape
        U = self.cfg.v_head_dim
        k_nope_BTHZ, v_BTHU = self.wkv_b(c_BTC).view(B, T, H, Z + U).split((Z, U), dim=-1)
        k_pe_BTHR = k_pe_BTR.unsqueeze(2).expand(-1, -1, H, -1)
        q_BTHK = torch.cat((q_nope_BTHZ, q_pe_BTHR), dim=-1)  # K = Z + R
        k_BTHK = torch.cat((k_nope_BTHZ, k_pe_BTHR), dim=-1)
        if cache is not None:
            k_BTHK, v_BTHU = update_cache(cache, start_pos, k=k_BTHK, v=v_BTHU)
        o_BHTU = grouped_causal_attention(
            q_BTHK.transpose(1, 2),
            k_BTHK.transpose(1, 2),
            v_BTHU.transpose(1, 2),
            start_pos,
            self.softmax_scale,
        )
        return o_BHTU.transpose(1, 2)

    def _absorbed(self, q_nope_BTHZ, q_pe_BTHR, c_BTC, k_pe_BTR, start_pos, cache):
        """Attend in latent space: score = (W^UK_i^T q^C_i) . c_j + q^R_i . k^R_j, then W^UV_i.

        The cache row is [c (C) | k^R (R)], so every head scores against one shared
        (C+R)-dim key: MQA over the latent. The whole row also serves as the value (SDPA's
        fused kernel wants equal dims); the last R output dims are dropped, leaving sum_j p c_j.
        """
        B, T, H, Z = q_nope_BTHZ.shape
        C, U = self.cfg.kv_lora_rank, self.cfg.v_head_dim
        w_uk_HZC, w_uv_HUC = self.wkv_b.weight.view(H, Z + U, C).split((Z, U), dim=1)
        q_lat_BTHC = torch.einsum("bthz,hzc->bthc", q_nope_BTHZ, w_uk_HZC)  # absorb W^UK
        q_BHTK = torch.cat((q_lat_BTHC, q_pe_BTHR), dim=-1).transpose(1, 2)  # K = C + R
        (kv_BSK,) = update_cache(cache, start_pos, latent_pe=torch.cat((c_BTC, k_pe_BTR), dim=-1))
        kv_B1SK = kv_BSK.unsqueeze(1)
        x_BHTC = grouped_causal_attention(q_BHTK, kv_B1SK, kv_B1SK, start_pos, self.softmax_scale)[
            ..., :C
        ]
        return torch.einsum("bhtc,huc->bthu", x_BHTC, w_uv_HUC)  # absorb W^UV

    def score_flops_per_token(self, context: int) -> float:
        """2 H (d_h + d_R) per key for q.k plus 2 H d_v for the values: the math, not the
        CPU forward's zero-padded values (`grouped_causal_attention`)."""
        cfg = self.cfg
        width = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim
        return 2.0 * self.num_heads * width * context

    def new_cache(
        self, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        cfg, H = self.cfg, self.num_heads
        if cfg.cache_impl == "absorbed":  # normalised latent c^KV and rotated k^R side by side
            shape = (batch_size, max_len, cfg.kv_lora_rank + cfg.qk_rope_head_dim)
            return {"latent_pe": torch.zeros(shape, dtype=dtype, device=device)}
        k_shape = (batch_size, max_len, H, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
        return {
            "k": torch.zeros(k_shape, dtype=dtype, device=device),
            "v": torch.zeros((batch_size, max_len, H, cfg.v_head_dim), dtype=dtype, device=device),
        }
