"""Harness overhead: the trainer's step time against a bare PyTorch loop, same run.

Both loops train the identical model (same init) on the identical batches with the same
AdamW, schedule and clipping; the bare loop has no hooks, logging, checkpoints or data
sampling inside the timed region. Prints the per-step medians and their ratio (target <= 1.05).

    python benchmarks/bench_overhead.py [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ablate.core.config import load_config
from ablate.core.data import train_batch
from ablate.core.trainer import lr_at, train
from ablate.core.trial import build, param_groups

CONFIG = Path(__file__).resolve().parent.parent / "sweeps" / "base" / "shakespeare_char.yaml"
OVERRIDES = [
    "data.dataset={name: embedded}",
    "train.eval_every=100000",
    "train.log_every=50",
    "train.checkpoint_every=0",
    "data.eval_windows=8",
]


def bare_loop(cfg) -> float:
    """Median seconds per step of a plain loop (after 5 warm-up steps)."""
    corpus, model, _ = build(cfg, torch.device("cpu"))
    tc = cfg.train
    batches = [train_batch(corpus, cfg.data, tc.seed, s) for s in range(1, tc.steps + 1)]
    opt = torch.optim.AdamW(
        param_groups(model, tc.weight_decay), lr=tc.lr, betas=(tc.beta1, tc.beta2)
    )
    times = []
    for step, (x, y) in enumerate(batches, start=1):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[5:])


def harness(cfg) -> float:
    """Seconds per step of `ablate.core.trainer.train` (its own timing, evals excluded)."""
    with tempfile.TemporaryDirectory() as d:
        s = train(cfg, d)
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * cfg.train.grad_accum
    return tokens_per_step / s["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(CONFIG, [*OVERRIDES, f"train.steps={args.steps}"])
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    bare, ours = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        bare.append(bare_loop(cfg))
        ours.append(harness(cfg))
    b, h = statistics.median(bare), statistics.median(ours)
    print(f"bare loop   : {b * 1e3:7.2f} ms/step  (runs: {[round(x * 1e3, 2) for x in bare]})")
    print(f"ablate train: {h * 1e3:7.2f} ms/step  (runs: {[round(x * 1e3, 2) for x in ours]})")
    print(f"ratio harness/bare = {h / b:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
