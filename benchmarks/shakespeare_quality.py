"""Quality per token and time against nanoGPT's CPU baseline (BENCHMARKS.md).

Trains `sweeps/base/shakespeare_char.yaml` (2000 steps x 768 tokens) and reports the exact
full-split validation loss, the first evaluated step at which it is at or below nanoGPT's
1.898, and the training wall time to that step (evaluation time excluded). Because the
baseline's 83 s were measured on another machine, the same run also times a GPT-2-style model
of nanoGPT's README CPU configuration (learned positions, LayerNorm, GELU MLP, tied head;
written here, not nanoGPT's code) on the identical batches, and compares against that too.

    ABLATE_DATA_DIR=../shared/data python benchmarks/shakespeare_quality.py [overrides...]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ablate.core.config import load_config
from ablate.core.data import load_corpus, train_batch
from ablate.core.trainer import train
from ablate.core.trial import build, param_groups

CONFIG = Path(__file__).resolve().parent.parent / "sweeps" / "base" / "shakespeare_char.yaml"
NANOGPT_VAL_LOSS, NANOGPT_WALL_S, NANOGPT_STEPS = 1.898, 83.0, 2000
TIMED_STEPS, WARMUP_STEPS = 60, 10


class GPT2Block(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln1, self.ln2 = nn.LayerNorm(dim, bias=False), nn.LayerNorm(dim, bias=False)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.fc, self.out = nn.Linear(dim, 4 * dim, bias=False), nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        q, k, v = (
            self.qkv(self.ln1(x_BTD)).view(B, T, 3, self.num_heads, -1).transpose(1, 3).unbind(2)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x_BTD = x_BTD + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x_BTD + self.out(F.gelu(self.fc(self.ln2(x_BTD))))


class GPT2Ref(nn.Module):
    """nanoGPT's CPU-config architecture: 4 layers, 4 heads, width 128, context 64."""

    def __init__(
        self, vocab: int, dim: int = 128, layers: int = 4, heads: int = 4, ctx: int = 64
    ) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(ctx, dim)
        self.blocks = nn.ModuleList(GPT2Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim, bias=False)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx_BT: torch.Tensor, y_BT: torch.Tensor):
        x = self.tok(idx_BT) + self.pos(torch.arange(idx_BT.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln(x))
        return logits, F.cross_entropy(logits.flatten(0, 1), y_BT.flatten())


def step_ms(model: nn.Module, batches) -> float:
    """Median ms per AdamW step (forward, backward, clip, update) after warm-up."""
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    times = []
    for x, y in batches:
        t0 = time.perf_counter()
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[WARMUP_STEPS:])


def main() -> None:
    cfg = load_config(CONFIG, sys.argv[1:])
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    with tempfile.TemporaryDirectory() as d:
        summary = train(cfg, d)
        rows = [json.loads(line) for line in Path(d, "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_loss" in r]
    for r in evals:
        print(f"step {r['step']:5d}  val_loss {r['val_loss']:.4f}  train_s {r['train_s']:.1f}")
    print(
        f"final exact val loss {summary['val_loss']:.4f} (nanoGPT {NANOGPT_VAL_LOSS}); "
        f"{summary['num_params']:,} params; {summary['tokens_per_s']:,.0f} tokens/s"
    )
    corpus = load_corpus(cfg.data)
    batches = [train_batch(corpus, cfg.data, 0, s) for s in range(TIMED_STEPS)]
    torch.manual_seed(0)
    ref = GPT2Ref(corpus.tokenizer.vocab_size)
    ours = build(cfg, torch.device("cpu"))[1]
    ref_ms, ours_ms = step_ms(ref, batches), step_ms(ours, batches)
    print(
        f"same-run step time: ours {ours_ms:.1f} ms, nanoGPT-architecture reference "
        f"{ref_ms:.1f} ms ({sum(p.numel() for p in ref.parameters()):,} params); "
        f"reference 2000 steps here = {NANOGPT_STEPS * ref_ms / 1e3:.0f} s"
    )
    first = next((r for r in evals if r["val_loss"] <= NANOGPT_VAL_LOSS), None)
    if first is None:
        print(f"never reached {NANOGPT_VAL_LOSS}")
        return
    ref_wall = NANOGPT_STEPS * ref_ms / 1e3
    print(
        f"passes {NANOGPT_VAL_LOSS} at step {first['step']} after {first['train_s']:.1f} s of "
        f"training: {first['train_s'] / NANOGPT_WALL_S:.2f} of nanoGPT's {NANOGPT_WALL_S:.0f} s "
        f"(baselines.md), {first['train_s'] / ref_wall:.2f} of the same-run reference's "
        f"{ref_wall:.0f} s"
    )


if __name__ == "__main__":
    main()
