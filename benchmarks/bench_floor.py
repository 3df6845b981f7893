"""A sweep's wall-time floor on this machine: what its matrix products and attention cores cost.

Each arm's model (first seed's config, fresh weights, the trainer's step) takes training steps
and one evaluation under torch.profiler at the trials' thread count. The self CPU time of the
GEMM operators and of the attention core (SDPA and its backward) is work that no rewrite of the
rest removes while results stay identical; their FLOPs (FlopCounterMode) over that time give
the rate they ran at, printed beside a large square sgemm's in the same process (the core's
practical peak). The floor charges each trial its steps and evaluations at that cost alone.
With one-thread trials on C cores one core runs at least ceil(n / C) of the n trials, so the
sweep takes at least the sum of its ceil(n / C) cheapest trials, and at least total / C.

    ABLATE_DATA_DIR=../shared/data python -m benchmarks.bench_floor [sweeps/mla_vs_mha.yaml]
        [--steps 6]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from ablate.core.evaluate import evaluate
from ablate.core.trainer import evaluates_at
from ablate.study.speed import build_arm, first_trials
from ablate.study.sweep import load_sweep

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_grouped_mm")
ATTENTION_MARK = "scaled_dot_product"  # SDPA's kernels, forward and backward
PEAK_N = 2048  # square sgemm for the core's practical rate


def makespan_floor(costs: list[float], cores: int) -> float:
    """Least possible wall time of indivisible jobs `costs` (seconds) on `cores` equal cores."""
    if not costs:
        return 0.0
    cheapest = sorted(costs)[: math.ceil(len(costs) / cores)]  # the busiest core runs as many
    return max(sum(costs) / cores, max(costs), sum(cheapest))


def _split(prof) -> tuple[float, float]:
    """(GEMM, attention core) self CPU seconds in a profile."""
    gemm = attn = 0.0
    for e in prof.key_averages():
        if e.key in GEMM_OPS:
            gemm += e.self_cpu_time_total / 1e6
        elif ATTENTION_MARK in e.key:
            attn += e.self_cpu_time_total / 1e6
    return gemm, attn


def _gemm_flops(arm) -> int:
    """FLOPs of one training step's matrix products (attention cores excluded)."""
    with FlopCounterMode(display=False) as fc:
        arm.train_step()
    counts = fc.get_flop_counts()["Global"]
    return sum(n for op, n in counts.items() if ATTENTION_MARK not in str(op))


def _peak_rate() -> float:
    a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * PEAK_N**3 / min(times)


def measure_arm(arm, steps: int) -> dict[str, float]:
    """Per step: unprofiled wall time, GEMM and attention self time; per evaluation the same."""
    for _ in range(2):  # warm-up: allocator, first calls
        arm.train_step()
    walls = []
    for _ in range(steps):
        t0 = time.perf_counter()
        arm.train_step()
        walls.append(time.perf_counter() - t0)
    with profile() as prof:
        for _ in range(steps):
            arm.train_step()
    gemm, attn = (x / steps for x in _split(prof))
    flops = _gemm_flops(arm)
    with profile() as prof:
        evaluate(arm.model, arm.corpus, arm.cfg, arm.precision)
    eval_gemm, eval_attn = _split(prof)
    arm.model.train()
    return {
        "step_s": statistics.median(walls),
        "gemm_s": gemm,
        "attn_s": attn,
        "gemm_rate": flops / gemm,
        "eval_floor_s": eval_gemm + eval_attn,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", nargs="?", default="sweeps/mla_vs_mha.yaml")
    p.add_argument("--steps", type=int, default=6, help="timed and profiled steps per arm")
    args = p.parse_args()
    sweep = load_sweep(args.sweep)
    first = first_trials(sweep)
    threads = first[sweep.baseline].cfg.train.threads or 1
    torch.set_num_threads(threads)
    cores = max(1, (os.cpu_count() or 1) // threads)
    load0 = os.getloadavg()
    peak = _peak_rate()
    print(f"{sweep.name}: {len(sweep.trials)} trials, {threads} thread(s) each, {cores} at once")
    print(f"sgemm {PEAK_N}^3: {peak / 1e9:.1f} GFLOP/s")
    head = "step ms  GEMM ms  attn ms  floor %  GEMM GFLOP/s  eval floor s"
    print(f"{'arm':8s} {head}")
    costs = []
    for name, trial in first.items():
        arm = build_arm(name, trial, sweep.run_dir / "trials" / trial.trial_id)
        m = measure_arm(arm, args.steps)
        floor_step = m["gemm_s"] + m["attn_s"]
        tc = trial.cfg.train
        evals = sum(evaluates_at(s, tc) for s in range(1, tc.steps + 1))
        cost = tc.steps * floor_step + evals * m["eval_floor_s"]
        costs += [cost] * sum(1 for t in sweep.trials if t.arm == name)
        print(
            f"{name:8s} {1e3 * m['step_s']:7.1f} {1e3 * m['gemm_s']:8.1f} {1e3 * m['attn_s']:8.1f}"
            f" {100 * floor_step / m['step_s']:8.0f} {m['gemm_rate'] / 1e9:13.1f}"
            f" {m['eval_floor_s']:13.2f}   trial {cost:.0f} s ({tc.steps} steps, {evals} evals)"
        )
    floor = makespan_floor(costs, cores)
    load1 = os.getloadavg()
    print(f"floor of the trials alone on {cores} core(s): {floor:.0f} s ({floor / 60:.1f} min)")
    print(f"load average {load0[0]:.2f} -> {load1[0]:.2f}")


if __name__ == "__main__":
    main()
