"""Load-balance measures for mixture-of-experts routing: expert counts, MaxVio, f·P balance loss.

MaxVio = (max_i Load_i - mean Load) / mean Load (Wang et al. 2024, arXiv 2408.15664, eq. 4);
the balance loss is alpha * sum_i f_i P_i (Switch/GShard form; DeepSeek-V3 eq. 17-20).
Pure functions over tensors; no component is named here.
Shapes (docs/design.md#shapes): N tokens, X experts chosen per token, E experts, W balance
scopes (sequences), T tokens per scope.
"""

from __future__ import annotations

import torch

_TINY = torch.finfo(torch.float64).tiny  # guards divisions by an all-zero load


def expert_counts(ids_NX: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Tokens assigned to each expert: (E,) int64."""
    return torch.bincount(ids_NX.flatten(), minlength=num_experts)


def sequence_counts(ids_NX: torch.Tensor, num_seqs: int, num_experts: int) -> torch.Tensor:
    """Per-sequence expert counts (W, E); the N tokens are W equal-length sequences in order."""
    assert ids_NX.shape[0] % num_seqs == 0, "tokens must split into equal-length sequences"
    seq_N = torch.arange(ids_NX.shape[0], device=ids_NX.device) // (ids_NX.shape[0] // num_seqs)
    flat = (seq_N[:, None] * num_experts + ids_NX).flatten()
    return torch.bincount(flat, minlength=num_seqs * num_experts).view(num_seqs, num_experts)


def maxvio(loads_E: torch.Tensor) -> torch.Tensor:
    """MaxVio over the last dim: (max - mean) / mean; 0 where no token was routed."""
    loads_E = loads_E.double()
    mean = loads_E.mean(-1)
    vio = (loads_E.amax(-1) - mean) / mean.clamp_min(_TINY)
    return torch.where(mean > 0, vio, torch.zeros_like(vio))


def relative_load(loads_E: torch.Tensor) -> torch.Tensor:
    """Load_i / mean load (1 = perfectly balanced; DeepSeek-V3 Fig. 9); zeros if empty."""
    loads_E = loads_E.double()
    mean = loads_E.mean(-1, keepdim=True)
    return torch.where(mean > 0, loads_E / mean.clamp_min(_TINY), torch.zeros_like(loads_E))


def balance_loss(probs_WTE: torch.Tensor, chosen_WE: torch.Tensor, topk: int) -> torch.Tensor:
    """Sum_i f_i P_i per scope (one row of W), averaged over rows; no coefficient applied.

    Args:
        probs_WTE: per-token expert probabilities (carry the gradient).
        chosen_WE: how many of the scope's T tokens chose each expert (a constant).
        topk: experts chosen per token, X.

    Returns:
        A scalar: 1 when perfectly balanced, E/X at collapse onto X experts with equal P.
    """
    num_tokens, num_experts = probs_WTE.shape[1], probs_WTE.shape[2]
    f_WE = chosen_WE.detach().to(probs_WTE.dtype) * (num_experts / (topk * num_tokens))
    p_WE = probs_WTE.mean(1)
    return (f_WE * p_WE).sum(-1).mean()


def check_routing(num_experts: int, topk: int, num_groups: int, topk_groups: int) -> None:
    """ValueError unless X experts of E fit in `topk_groups` of `num_groups` equal groups."""
    if not 0 < topk <= num_experts:
        raise ValueError(f"topk={topk} must be in 1..num_routed_experts ({num_experts})")
    if num_groups < 1 or num_experts % num_groups:
        raise ValueError(
            f"router.num_groups={num_groups} must divide num_routed_experts={num_experts}"
        )
    if not 0 < topk_groups <= num_groups:
        raise ValueError(
            f"router.topk_groups={topk_groups} must be in 1..router.num_groups ({num_groups})"
        )
    if topk > topk_groups * (num_experts // num_groups):
        raise ValueError(
            f"topk={topk} exceeds the experts in router.topk_groups={topk_groups} "
            f"groups of {num_experts // num_groups}"
        )
