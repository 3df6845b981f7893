"""Corpus loading, a train/val split spread over the corpus, seeded training windows, exact
validation.

The validation split is `data.val_chunks` contiguous chunks, one at the end of each of as many
equal blocks of the token stream (so it samples the whole corpus, not its last file); no token
is in both splits and no training window crosses a chunk. Training batch `step` is a pure
function of (seed, step, micro-batch): resuming needs no sampler state. Validation scores every
token of every chunk exactly once (the first from the token before it), in windows of
`seq_len` targets; `data.eval_stride` > 0 slides the window by that many tokens instead, so
every scored token but the first few sees a full context (`seq_len - eval_stride` or more).
Shapes (docs/design.md#shapes): B windows, T tokens per window, N a flat token stream.
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
IGNORE = -100  # target id cross_entropy skips: padding and context-only positions


@dataclass
class Corpus:
    """Token ids and the split. Built from `train_N`/`val_N` alone, it is one segment each."""

    tokenizer: Tokenizer
    train_N: torch.Tensor  # training tokens (the segments concatenated), int64
    val_N: torch.Tensor  # validation tokens (the chunks concatenated)
    info: dict[str, Any] = field(default_factory=dict)
    ids_N: torch.Tensor | None = None  # the whole stream, both splits in place
    train_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) in ids_N
    val_spans: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ids_N is None:
            n = len(self.train_N)
            self.ids_N = torch.cat([self.train_N, self.val_N])
            self.train_spans, self.val_spans = [(0, n)], [(n, len(self.ids_N))]


def split_spans(num: int, num_val: int, chunks: int) -> tuple[list, list]:
    """Train segments and val chunks: chunk k is the tail of the k-th of `chunks` equal blocks."""
    train, val = [], []
    for k in range(chunks):
        lo, hi = k * num // chunks, (k + 1) * num // chunks
        size = (k + 1) * num_val // chunks - k * num_val // chunks
        train.append((lo, hi - size))
        val.append((hi - size, hi))
    return train, val


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read, tokenize and split the configured dataset (val: `val_fraction` in `val_chunks`)."""
    dataset = registry.build(cfg.dataset)
    text = dataset.load_text()
    tokenizer = registry.build(cfg.tokenizer)
    tokenizer.fit(text)
    ids_N = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    n_val = int(len(ids_N) * cfg.val_fraction)
    train, val = split_spans(len(ids_N), n_val, cfg.val_chunks)
    if min(hi - lo for lo, hi in train) < cfg.seq_len + 1 or min(hi - lo for lo, hi in val) < 1:
        raise ValueError(
            f"data: corpus of {len(ids_N)} tokens is too small for seq_len {cfg.seq_len} "
            f"with val_fraction {cfg.val_fraction} in val_chunks {cfg.val_chunks}"
        )
    info = {
        **dataset.describe(),
        "num_tokens": len(ids_N),
        "num_val_tokens": n_val,
        "val_split": f"{cfg.val_chunks} chunks spread evenly over the corpus",
        "eval": f"sliding windows, stride {cfg.eval_stride}"
        if cfg.eval_stride
        else f"non-overlapping windows of {cfg.seq_len} (context reset per window)",
        "vocab_size": tokenizer.vocab_size,
    }
    cat = lambda spans: torch.cat([ids_N[lo:hi] for lo, hi in spans])  # noqa: E731
    return Corpus(tokenizer, cat(train), cat(val), info, ids_N, train, val)


def train_batch(
    corpus: Corpus, cfg: DataConfig, seed: int, step: int, micro: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows inside the training segments: (x_BT, y_BT) with y shifted by one."""
    g = torch.Generator().manual_seed((seed * _SEED_MIX + step) * _SEED_MIX + micro)
    T = cfg.seq_len
    # window starts s with s + T < end: every training token, the last included, can be drawn
    counts = torch.tensor([hi - lo - T for lo, hi in corpus.train_spans])
    firsts = torch.tensor([lo for lo, _ in corpus.train_spans])
    r_B = torch.randint(int(counts.sum()), (cfg.batch_size,), generator=g)
    seg_B = torch.searchsorted(counts.cumsum(0), r_B, right=True)
    starts_B = firsts[seg_B] + r_B - (counts.cumsum(0) - counts)[seg_B]
    win_BT = corpus.ids_N[starts_B[:, None] + torch.arange(T + 1)]
    return win_BT[:, :-1], win_BT[:, 1:]


def _val_windows(corpus: Corpus, cfg: DataConfig) -> list[tuple[int, int, int]]:
    """(first target, end of targets, first scored target) of every validation window."""
    T, S = cfg.seq_len, cfg.eval_stride or cfg.seq_len
    out = []
    for lo, hi in corpus.val_spans:
        out.append((lo, min(lo + T, hi), lo))  # the first window scores all its targets
        for end in range(lo + T + S, hi + S, S):
            out.append((max(lo, min(end, hi) - T), min(end, hi), end - S))
    return out[: cfg.eval_windows] if cfg.eval_windows else out


def val_batches(
    corpus: Corpus, cfg: DataConfig, batch_size: int = 64
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Held-out windows in order, `batch_size` at a time; unscored targets are IGNORE.

    Window targets are ids_N[a:b] with inputs ids_N[a-1:b-1]; short windows are padded.
    """
    T, ids_N = cfg.seq_len, corpus.ids_N
    windows = _val_windows(corpus, cfg)
    for i in range(0, len(windows), batch_size):
        group = windows[i : i + batch_size]
        x_BT = torch.zeros(len(group), T, dtype=torch.long)
        y_BT = torch.full((len(group), T), IGNORE, dtype=torch.long)
        for b, (a, e, scored) in enumerate(group):
            x_BT[b, : e - a] = ids_N[a - 1 : e - 1]
            y_BT[b, scored - a : e - a] = ids_N[scored:e]
        yield x_BT, y_BT
