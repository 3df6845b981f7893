"""Attention cores and the KV-cache update shared by attention components.

Softmax attention over q (B, H, T, K) and k, v (B, H or G, S, K or V) with the causal mask of
queries at positions start_pos.. ; the cache update writes new (B, T, ...) entries in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_attention(
    q_BHTK: torch.Tensor, k_BHSK: torch.Tensor, v_BHSV: torch.Tensor, start_pos: int, scale: float
) -> torch.Tensor:
    """Softmax attention of T queries at positions start_pos.. over S = start_pos+T keys."""
    T, S = q_BHTK.shape[-2], k_BHSK.shape[-2]
    if start_pos == 0 and T == S:
        return F.scaled_dot_product_attention(q_BHTK, k_BHSK, v_BHSV, is_causal=True, scale=scale)
    pos_T = torch.arange(start_pos, start_pos + T, device=q_BHTK.device)
    mask_TS = torch.arange(S, device=q_BHTK.device)[None, :] <= pos_T[:, None]
    return F.scaled_dot_product_attention(q_BHTK, k_BHSK, v_BHSV, attn_mask=mask_TS, scale=scale)


def grouped_causal_attention(
    q_BHTK: torch.Tensor, k_BGSK: torch.Tensor, v_BGSV: torch.Tensor, start_pos: int, scale: float
) -> torch.Tensor:
    """Causal attention where each of G key/value heads serves H/G consecutive query heads.

    Keys and values are never copied to H heads: a full causal pass uses SDPA's grouped mode;
    otherwise the R = H/G query heads of a group are folded into the query rows (B, G, R*T, K).
    """
    B, H, T, K = q_BHTK.shape
    G, S, V = k_BGSK.shape[1], k_BGSK.shape[2], v_BGSV.shape[-1]
    if T > 1 and V < K:  # SDPA's fused CPU kernel needs V == K; zero value dims stay zero
        v_BGSK = F.pad(v_BGSV, (0, K - V))
        return grouped_causal_attention(q_BHTK, k_BGSK, v_BGSK, start_pos, scale)[..., :V]
    if G == H:
        return causal_attention(q_BHTK, k_BGSK, v_BGSV, start_pos, scale)
    if start_pos == 0 and T == S:
        return F.scaled_dot_product_attention(
            q_BHTK, k_BGSK, v_BGSV, is_causal=True, scale=scale, enable_gqa=True
        )
    q_BGXK = q_BHTK.reshape(B, G, (H // G) * T, K)  # X = R*T rows, head-major
    pos_T = torch.arange(start_pos, start_pos + T, device=q_BHTK.device)
    mask_TS = torch.arange(S, device=q_BHTK.device)[None, :] <= pos_T[:, None]
    mask_XS = mask_TS.repeat(H // G, 1)
    o_BGXV = F.scaled_dot_product_attention(q_BGXK, k_BGSK, v_BGSV, attn_mask=mask_XS, scale=scale)
    return o_BGXV.reshape(B, H, T, -1)


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
