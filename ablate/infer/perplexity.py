"""Perplexity of a model on a token stream: every token after the first scored exactly once.

Windows of `seq_len` inputs advance by `seq_len` (no overlap). Shapes: T time, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def perplexity(model: nn.Module, ids_N: torch.Tensor, seq_len: int) -> dict[str, float]:
    """Mean next-token loss, its exp and the number of scored tokens over `ids_N`."""
    if ids_N.numel() < 2:
        raise ValueError("perplexity needs at least 2 tokens")
    max_len = model.cfg.max_seq_len
    if not 1 <= seq_len <= max_len:
        raise ValueError(f"seq_len={seq_len}: must be 1 to the model's max_seq_len ({max_len})")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, ids_N.numel() - 1, seq_len):
        y_T = ids_N[start + 1 : start + 1 + seq_len]
        x_T = ids_N[start : start + y_T.numel()]
        logits_1TV, _ = model(x_T[None].to(device))
        total += F.cross_entropy(logits_1TV[0].float(), y_T.to(device), reduction="sum").item()
        count += y_T.numel()
    model.train(was_training)
    loss = total / count
    return {"tokens": count, "loss": loss, "ppl": math.exp(min(loss, 50.0))}
