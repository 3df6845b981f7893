"""CPU side of the FP8 study: training-step cost per precision and quantization error stats.

Step cost: forward + backward + optimizer step of `sweeps/base/small.yaml` (width 128, 4
layers, 16 x 128 tokens) for fp32, bf16 and fp8_block (emulation backend on CPU), plus one
evaluation pass; median CPU time of this process over `--steps` steps after 3 warm-up steps
(with one thread, CPU time is close to what a quiet machine's wall clock would show).
Quantization errors (PyTorch references, the same numerics as the kernels): relative Frobenius
error of 1x128 / 128x128 quantization, the outlier case of docs/design.md check 16, and the
block-scaled GEMM vs the fp32 GEMM at K = 4096 (check 17).

    python benchmarks/bench_precision.py [--steps 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings
from pathlib import Path

import torch

from ablate.core import data as data_mod
from ablate.core.config import load_config
from ablate.core.evaluate import evaluate
from ablate.core.trial import build
from kernels.fp8_gemm import fp8_gemm_ref
from kernels.fp8_quant import FP8_E4M3_MAX, act_quant_ref, dequant_ref, weight_quant_ref

SMALL = Path(__file__).resolve().parent.parent / "sweeps" / "base" / "small.yaml"
PRECISIONS = ("fp32", "bf16", "fp8_block")
WARMUP = 3


def _cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def step_costs(steps: int) -> None:
    print(f"{'precision':<10} {'step cpu ms':>12} {'step wall ms':>13} {'eval cpu s':>11}")
    for name in PRECISIONS:
        cfg = load_config(SMALL, [f"train.precision.name={name}"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            corpus, model, prec = build(cfg, torch.device("cpu"))
        opt = prec.build_optimizer([{"params": list(model.parameters())}], lr=1e-3)

        def step(i: int, corpus=corpus, model=model, prec=prec, opt=opt, cfg=cfg) -> None:
            x, y = data_mod.train_batch(corpus, cfg.data, 0, i, 0)
            with prec.autocast():
                _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for i in range(WARMUP):
            step(i)
        cpu, wall = [], []
        for i in range(steps):
            t0 = time.perf_counter()
            cpu.append(_cpu_ms(lambda i=i: step(i)))
            wall.append((time.perf_counter() - t0) * 1e3)
        eval_s = _cpu_ms(functools.partial(evaluate, model, corpus, cfg, prec)) / 1e3
        print(
            f"{name:<10} {statistics.median(cpu):12.0f} {statistics.median(wall):13.0f} "
            f"{eval_s:11.1f}"
        )


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def quant_errors() -> None:
    torch.manual_seed(0)
    x = torch.randn(512, 1024)
    print(
        f"act 1x128, N(0,1) 512x1024:       rel err {_rel(dequant_ref(*act_quant_ref(x)), x):.4f}"
    )
    w = torch.randn(1024, 1024) * 0.02
    w_hat = dequant_ref(*weight_quant_ref(w), (128, 128))
    print(f"weight 128x128, N(0,0.02):         rel err {_rel(w_hat, w):.4f}")
    x[7, 100] = 1e5
    others = torch.arange(512) != 7
    s = x.abs().max() / FP8_E4M3_MAX
    per_tensor = ((x / s).to(torch.float8_e4m3fn).float() * s)[others]
    tiled = dequant_ref(*act_quant_ref(x))[others]
    for label, x_hat in (("per-tensor", per_tensor), ("1x128 tiles", tiled)):
        zeros = (x_hat == 0).float().mean().item()
        print(
            f"outlier 1e5, {label:<12} other rows: rel err {_rel(x_hat, x[others]):.4f}, "
            f"zeros {100 * zeros:.3f}%"
        )
    a, b = torch.randn(256, 4096), torch.randn(512, 4096) * 0.02
    out = fp8_gemm_ref(*act_quant_ref(a), *weight_quant_ref(b), 128, torch.float32)
    print(f"block GEMM vs fp32, K=4096:        rel err {_rel(out, a @ b.t()):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quant_errors()
    step_costs(args.steps)


if __name__ == "__main__":
    main()
