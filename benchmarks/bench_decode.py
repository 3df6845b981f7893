"""Cached decoding on CPU: tokens/s and KV-cache memory for MHA, GQA, MLA-naive, MLA-absorbed.

The models use the width of `sweeps/base/small.yaml` (128 wide, 4 layers, 4 heads) and the MLA
dims of `sweeps/mla_vs_mha.yaml`. For each context length S: a prompt of S tokens is prefilled
into the caches (timed), then `--new` tokens are decoded one at a time (timed, tokens/s counts
all rows of the batch). Also prints the training step time (forward + backward + AdamW at
16 x 128 tokens) and checks that the absorbed cache holds exactly d_c + d_R per token.
Times are wall clock and, less sensitive to a shared machine, CPU time of this process
(with one thread CPU time is close to what a quiet machine's wall clock would show).

    python benchmarks/bench_decode.py [--contexts 256 4096] [--batch 4] [--new 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ablate import registry
from ablate.core.config import ModelConfig
from ablate.core.model import Transformer

WIDTH = dict(dim=128, num_layers=4, num_heads=4, vocab_size=256)
MLA = dict(kv_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32)
ARMS = {
    "mha": ("mha", {}),
    "gqa (2 kv heads)": ("gqa", dict(num_kv_heads=2)),
    "mla-naive": ("mla", dict(MLA, cache_impl="naive")),
    "mla-absorbed": ("mla", dict(MLA, cache_impl="absorbed")),
}
TRAIN_SHAPE = (16, 128)  # windows x tokens of one training step (base/small.yaml)


def build(arm: str, max_len: int) -> Transformer:
    name, fields = ARMS[arm]
    cfg = ModelConfig(
        **WIDTH, max_seq_len=max_len, attention=registry.get("attention", name).Config(**fields)
    )
    torch.manual_seed(0)
    return Transformer(cfg)


class Clock:
    """Wall and process CPU seconds since construction."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def train_step_ms(arm: str, repeats: int) -> tuple[float, float]:
    model = build(arm, TRAIN_SHAPE[1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (torch.randint(0, WIDTH["vocab_size"], TRAIN_SHAPE) for _ in range(2))
    times = []
    for i in range(repeats + 2):  # two warm-up steps
        clock = Clock()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= 2:
            times.append(clock.lap())
    return tuple(1e3 * statistics.median(t[j] for t in times) for j in (0, 1))


@torch.inference_mode()
def decode(model: Transformer, batch: int, context: int, new: int) -> tuple:
    """(prefill (wall, cpu) s, decode (wall, cpu) s, cache bytes) for `context` prompt tokens."""
    caches = model.new_caches(batch, context + new)
    cache_bytes = sum(t.nbytes for c in caches for t in c.values())
    ids = torch.randint(0, WIDTH["vocab_size"], (batch, context + new))
    clock = Clock()
    model(ids[:, :context], caches=caches)
    prefill = clock.lap()
    clock = Clock()
    for pos in range(context, context + new):
        model(ids[:, pos : pos + 1], start_pos=pos, caches=caches)
    return prefill, clock.lap(), cache_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--new", type=int, default=32, help="decoded tokens per measurement")
    p.add_argument("--repeats", type=int, default=3, help="medians over this many runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}, batch {args.batch}, {args.new} new tokens"
    )
    max_len = max(args.contexts) + args.new
    models = {arm: build(arm, max_len).eval() for arm in ARMS}
    absorbed = models["mla-absorbed"].blocks[0].attn
    per_token = absorbed.kv_cache_bytes_per_token(torch.float32)
    assert per_token == 4 * (MLA["kv_lora_rank"] + MLA["qk_rope_head_dim"]), per_token
    print("\n| attention | KV elems/token/layer | train step ms (wall) | train step ms (CPU) |")
    print("|---|---|---|---|")
    for arm, model in models.items():
        elems = model.blocks[0].attn.kv_cache_bytes_per_token(torch.float32) // 4
        wall, cpu = train_step_ms(arm, args.repeats)
        print(f"| {arm} | {elems} | {wall:.0f} | {cpu:.0f} |", flush=True)
    print(
        "\n| context | attention | cache MiB (fp32) | prefill ms (wall / CPU) | "
        "decode tok/s (wall / CPU) |"
    )
    print("|---|---|---|---|---|")
    tokens = args.batch * args.new
    for context in args.contexts:
        for arm, model in models.items():
            runs = [decode(model, args.batch, context, args.new) for _ in range(args.repeats)]
            pre = [1e3 * statistics.median(r[0][j] for r in runs) for j in (0, 1)]
            tps = [tokens / statistics.median(r[1][j] for r in runs) for j in (0, 1)]
            print(
                f"| {context} | {arm} | {runs[0][2] / 2**20:.2f} | {pre[0]:.0f} / {pre[1]:.0f} "
                f"| {tps[0]:.0f} / {tps[1]:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
