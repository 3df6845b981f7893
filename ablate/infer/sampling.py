"""Pieces every decoding loop shares: the next-token choice and the dtype caches are kept in.

Shapes: B batch, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn


def sample_next(
    logits_BV: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from last-position logits: greedy at temperature 0, else sampled.

    Args:
        logits_BV: logits for the next position.
        temperature: 0 for argmax; otherwise logits are divided by it before the softmax.
        top_k: keep only the k most likely tokens before sampling (0 = all).
        generator: random source for sampling (reproducible with a seeded generator).
    """
    if temperature < 0 or top_k < 0:
        raise ValueError(f"temperature ({temperature}) and top_k ({top_k}) must be >= 0")
    if temperature == 0:
        return logits_BV.argmax(dim=-1)
    logits_BV = logits_BV.float() / temperature
    if 0 < top_k < logits_BV.shape[-1]:
        kth_B1 = logits_BV.topk(top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth_B1, float("-inf"))
    probs_BV = torch.softmax(logits_BV, dim=-1)
    return torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype caches are allocated in: that of the model's floating-point weights."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def default_context_shift(max_len: int) -> int:
    """Tokens dropped from the front of a full context window: a quarter of it (at least 1)."""
    return max(1, max_len // 4)


def context_start(pos: int, max_len: int, shift: int) -> int:
    """First position of the context whose newest token sits at `pos` (past the model's length).

    Up to `max_len` tokens the context is the whole sequence; after that it slides forward
    `shift` tokens at a time, so it keeps between `max_len - shift + 1` and `max_len` tokens and
    the KV cache is re-prefilled once per `shift` new tokens (1: nanoGPT's exact last-`max_len`
    window, re-prefilled every token). Every decoding loop uses this one rule, which is what
    keeps plain and speculative decoding token-identical past the context.
    """
    if not 1 <= shift <= max_len:
        raise ValueError(f"context_shift={shift} must be between 1 and max_seq_len={max_len}")
    if pos < max_len:
        return 0
    return -(-(pos + 1 - max_len) // shift) * shift  # the smallest multiple of shift that fits
