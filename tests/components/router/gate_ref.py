"""Oracle for the gate: DeepSeek-V3's `Gate.forward` algorithm (docs/design.md#deepseekmoe) in
plain PyTorch, with the 2025-02 -inf group mask and an fp32 bias attached by hand (design.md
check 12)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ds_gate(x, weight, bias, topk, num_groups, topk_groups, score_func, route_scale):
    scores = F.linear(x.float(), weight.float())
    scores = scores.softmax(-1) if score_func == "softmax" else scores.sigmoid()
    original = scores
    if bias is not None:
        scores = scores + bias
    if num_groups > 1:
        scores = scores.view(x.size(0), num_groups, -1)
        if bias is None:
            group_scores = scores.amax(dim=-1)
        else:
            group_scores = scores.topk(2, dim=-1)[0].sum(dim=-1)
        keep = group_scores.topk(topk_groups, dim=-1)[1]
        mask = scores.new_ones(x.size(0), num_groups, dtype=torch.bool).scatter_(1, keep, False)
        scores = scores.masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
    ids = scores.topk(topk, dim=-1)[1]
    weights = original.gather(1, ids)
    if score_func == "sigmoid":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * route_scale, ids


def sorted_pairs(weights, ids):
    """Weights and ids ordered by id, so sets compare equal regardless of top-k order."""
    order = ids.argsort(dim=-1)
    return weights.gather(1, order), ids.gather(1, order)
