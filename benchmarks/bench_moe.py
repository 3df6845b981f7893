"""MoE layer forward+backward tokens/s against a dense SwiGLU with the same activated parameters.

Both layers are timed in the same process, interleaved repetition by repetition (so machine
load hits both alike), at the aux_vs_bias sweep's size by default, then across numbers of
routed experts. Reports wall-clock and CPU-time (process time) throughput; on a shared machine
the CPU-time figure with one thread is the better estimate of a quiet machine.

    python benchmarks/bench_moe.py [--threads 1] [--reps 15] [--experts 4 8 16 32 64] [--gemm]

`--gemm` also times the routed up-projection alone: the grouped GEMM over the N * X sorted
assignments against one GEMM of the same rows and FLOPs (forward + backward, interleaved).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ablate import registry
from ablate.core.config import ModelConfig
from ablate.interfaces import BuildContext
from ablate.nn.grouped import grouped_linear
from ablate.nn.swiglu import SwiGLU
from ablate.study.speed import BenchSpec, Clock, interleave

WARMUP = 3  # untimed repetitions per layer (allocator, first-call costs)


def step(layer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    layer(x).backward(grad)
    for m in layer.modules():  # reset the routing-bias counts as the trainer would
        hook = getattr(m, "after_optimizer_step", None)
        if callable(hook):
            hook()


def compare(
    dim: int,
    batch: int,
    seq: int,
    experts: int,
    topk: int,
    shared: int,
    expert_dim: int,
    reps: int,
    router: str,
) -> dict[str, float]:
    moe_cls = registry.get("ffn", "moe")
    cfg = moe_cls.Config(
        num_routed_experts=experts,
        topk=topk,
        num_shared_experts=shared,
        expert_dim=expert_dim,
        router=registry.get("router", router).Config(),
    )
    moe = moe_cls(cfg, BuildContext(ModelConfig(dim=dim), 1)).train()
    dense = SwiGLU(dim, (shared + topk) * expert_dim)  # same activated FFN parameters
    x = torch.randn(batch, seq, dim, requires_grad=True)
    grad = torch.randn(batch, seq, dim)
    times: dict[str, dict[str, list[float]]] = {
        n: {"wall": [], "cpu": []} for n in ("moe", "dense")
    }
    for i in range(WARMUP + reps):
        for name, layer in (("moe", moe), ("dense", dense)):
            w0, c0 = time.perf_counter(), time.process_time()
            step(layer, x, grad)
            if i >= WARMUP:
                times[name]["wall"].append(time.perf_counter() - w0)
                times[name]["cpu"].append(time.process_time() - c0)
    tokens = batch * seq
    out = {"experts": experts}
    for clock in ("wall", "cpu"):
        for name in ("moe", "dense"):
            out[f"{name}_{clock}_tok_s"] = tokens / statistics.median(times[name][clock])
        out[f"ratio_{clock}"] = out[f"moe_{clock}_tok_s"] / out[f"dense_{clock}_tok_s"]
    return out


def gemm_cost(dim: int, rows: int, out: int, experts: int, reps: int) -> tuple[float, float]:
    """Median process-CPU ms of fwd+bwd: grouped over `experts` random groups, and one GEMM."""
    ends_E = torch.bincount(torch.randint(0, experts, (rows,)), minlength=experts).cumsum(0)
    x_AI = torch.randn(rows, dim, requires_grad=True)
    w_EOI = torch.randn(experts, out, dim, requires_grad=True)
    w_OI = torch.randn(out, dim, requires_grad=True)
    grad_AO = torch.randn(rows, out)
    runs = {
        "grouped": lambda: grouped_linear(x_AI, w_EOI, ends_E).backward(grad_AO),
        "one": lambda: (x_AI @ w_OI.t()).backward(grad_AO),
    }
    spec = BenchSpec(repetitions=reps, warmup=WARMUP)
    times = interleave(list(runs), lambda k: runs[k](), spec, Clock())
    return tuple(1e3 * statistics.median(times[k]["cpu_s"]) for k in runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--shared", type=int, default=1)
    p.add_argument("--expert-dim", type=int, default=112)
    p.add_argument("--router", default="sigmoid_bias")
    p.add_argument("--experts", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--gemm", action="store_true", help="also grouped vs one GEMM, same FLOPs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"dim {args.dim}, {args.batch}x{args.seq} tokens, top-{args.topk}, {args.shared} "
        f"shared, expert width {args.expert_dim}, router {args.router}, {args.threads} "
        f"thread(s), median of {args.reps}"
    )
    print("| routed experts | MoE tok/s (cpu) | dense tok/s (cpu) | ratio (cpu) | ratio (wall) |")
    print("|---|---|---|---|---|")
    for experts in args.experts:
        r = compare(
            args.dim,
            args.batch,
            args.seq,
            experts,
            args.topk,
            args.shared,
            args.expert_dim,
            args.reps,
            args.router,
        )
        print(
            f"| {experts} | {r['moe_cpu_tok_s']:,.0f} | {r['dense_cpu_tok_s']:,.0f} | "
            f"{r['ratio_cpu']:.2f} | {r['ratio_wall']:.2f} |"
        )
    if args.gemm:
        rows, out = args.batch * args.seq * args.topk, 2 * args.expert_dim
        print(f"\nup-projection fwd+bwd, {rows} x {args.dim} -> {out} (process CPU ms, median)")
        print("| routed experts | grouped GEMM | one GEMM | grouped / one |")
        print("|---|---|---|---|")
        for experts in args.experts:
            grouped, one = gemm_cost(args.dim, rows, out, experts, args.reps)
            print(f"| {experts} | {grouped:.2f} | {one:.2f} | {grouped / one:.2f} |")


if __name__ == "__main__":
    main()
