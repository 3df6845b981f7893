"""Corpus loading, deterministic train/val split, seeded training windows, exact validation.

Training batch `step` is a pure function of (seed, step, micro-batch): resuming needs no
sampler state. Validation uses every non-overlapping window of the held-out tail (or the first
`eval_windows` of them), so the validation loss is exact, not a random estimate.
Shapes (docs/design.md#shapes): B windows, T tokens per window (a window of T inputs plus its
last target is still `_BT`), N a flat token stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ablate import registry
from ablate.core.config import DataConfig
from ablate.interfaces import Tokenizer

_SEED_MIX = 1_000_003  # spreads (seed, step, micro) into distinct generator seeds


@dataclass
class Corpus:
    tokenizer: Tokenizer
    train_N: torch.Tensor  # token ids, int64
    val_N: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read, tokenize and split the configured dataset (val = the last `val_fraction`)."""
    dataset = registry.build(cfg.dataset)
    text = dataset.load_text()
    tokenizer = registry.build(cfg.tokenizer)
    tokenizer.fit(text)
    ids_N = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    n_val = int(len(ids_N) * cfg.val_fraction)
    min_len = cfg.seq_len + 1
    if n_val < min_len or len(ids_N) - n_val < min_len:
        raise ValueError(
            f"data: corpus of {len(ids_N)} tokens is too small for seq_len "
            f"{cfg.seq_len} with val_fraction {cfg.val_fraction}"
        )
    info = {
        **dataset.describe(),
        "num_tokens": len(ids_N),
        "num_val_tokens": n_val,
        "vocab_size": tokenizer.vocab_size,
    }
    return Corpus(tokenizer, ids_N[:-n_val], ids_N[-n_val:], info)


def train_batch(
    corpus: Corpus, cfg: DataConfig, seed: int, step: int, micro: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows for one micro-batch: (x_BT, y_BT) with y shifted by one."""
    g = torch.Generator().manual_seed((seed * _SEED_MIX + step) * _SEED_MIX + micro)
    starts_B = torch.randint(len(corpus.train_N) - cfg.seq_len - 1, (cfg.batch_size,), generator=g)
    idx_BT = starts_B[:, None] + torch.arange(cfg.seq_len + 1)
    win_BT = corpus.train_N[idx_BT]
    return win_BT[:, :-1], win_BT[:, 1:]


def val_batches(
    corpus: Corpus, cfg: DataConfig, batch_size: int = 64
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping held-out windows in order, `batch_size` at a time."""
    T = cfg.seq_len
    num = (len(corpus.val_N) - 1) // T
    if cfg.eval_windows:
        num = min(num, cfg.eval_windows)
    for lo in range(0, num, batch_size):
        starts_B = torch.arange(lo, min(lo + batch_size, num)) * T
        idx_BT = starts_B[:, None] + torch.arange(T + 1)
        win_BT = corpus.val_N[idx_BT]
        yield win_BT[:, :-1], win_BT[:, 1:]
