"""Attention cores and the KV-cache update shared by attention components.

Softmax attention over q (B, H, T, K) and k, v (B, H or G, S, K or U) with the causal mask of
queries at positions start_pos.. ; the cache update writes new (B, T, ...) entries in place.
Shapes (docs/design.md#shapes): B batch, T query positions, S key positions, H query heads,
G key/value heads, K query/key head dim, U value head dim, Q = (H/G)*T folded query rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_attention(
    q_BHTK: torch.Tensor, k_BHSK: torch.Tensor, v_BHSU: torch.Tensor, start_pos: int, scale: float
) -> torch.Tensor:
    """Softmax attention of T queries at positions start_pos.. over S = start_pos+T keys."""
    T, S = q_BHTK.shape[-2], k_BHSK.shape[-2]
    if start_pos == 0 and T == S:
        return F.scaled_dot_product_attention(q_BHTK, k_BHSK, v_BHSU, is_causal=True, scale=scale)
    pos_T = torch.arange(start_pos, start_pos + T, device=q_BHTK.device)
    mask_TS = torch.arange(S, device=q_BHTK.device)[None, :] <= pos_T[:, None]
    return F.scaled_dot_product_attention(q_BHTK, k_BHSK, v_BHSU, attn_mask=mask_TS, scale=scale)


def grouped_causal_attention(
    q_BHTK: torch.Tensor, k_BGSK: torch.Tensor, v_BGSU: torch.Tensor, start_pos: int, scale: float
) -> torch.Tensor:
    """Causal attention where each of G key/value heads serves H/G consecutive query heads.

    Keys and values are never copied to H heads: a full causal pass uses SDPA's grouped mode;
    otherwise the H/G query heads of a group are folded into Q = (H/G)*T query rows (B, G, Q, K).
    """
    B, H, T, K = q_BHTK.shape
    G, S, U = k_BGSK.shape[1], k_BGSK.shape[2], v_BGSU.shape[-1]
    if T > 1 and U < K:  # SDPA's fused CPU kernel needs U == K; zero value dims stay zero
        v_BGSK = F.pad(v_BGSU, (0, K - U))
        return grouped_causal_attention(q_BHTK, k_BGSK, v_BGSK, start_pos, scale)[..., :U]
    if G == H:
        return causal_attention(q_BHTK, k_BGSK, v_BGSU, start_pos, scale)
    if start_pos == 0 and T == S:
        return F.scaled_dot_product_attention(
            q_BHTK, k_BGSK, v_BGSU, is_causal=True, scale=scale, enable_gqa=True
        )
    q_BGQK = q_BHTK.reshape(B, G, (H // G) * T, K)  # head-major rows
    pos_T = torch.arange(start_pos, start_pos + T, device=q_BHTK.device)
    mask_TS = torch.arange(S, device=q_BHTK.device)[None, :] <= pos_T[:, None]
    mask_QS = mask_TS.repeat(H // G, 1)
    o_BGQU = F.scaled_dot_product_attention(q_BGQK, k_BGSK, v_BGSU, attn_mask=mask_QS, scale=scale)
    return o_BGQU.reshape(B, H, T, -1)


def update_cache(
    cache: dict[str, torch.Tensor], start_pos: int, **new_BT: torch.Tensor
) -> list[torch.Tensor]:
    """Write each new (B, T, ...) entry at positions start_pos.. and return, in the same order,
    the cached entries of every position so far: (B, start_pos + T, ...)."""
    out = []
    for name, x_BT in new_BT.items():
        B, T = x_BT.shape[:2]
        cache[name][:B, start_pos : start_pos + T] = x_BT
        out.append(cache[name][:B, : start_pos + T])
    return out
