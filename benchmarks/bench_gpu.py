"""GPU check and benchmark of the FP8 kernels, in one run of a few minutes (needs CUDA, sm_89+).

1. Every kernel compiled on the GPU vs its PyTorch reference (bitwise for the quantizers;
   relative Frobenius error for the GEMM and for the FP8 linear vs its emulation).
2. Median time of the FP8 GEMM (operands already quantized) vs BF16 torch.matmul and
   torch._scaled_mm (per-tensor and rowwise scales) at 4096^3 and 8192^3.
3. Median training-step time of a ~100M-parameter model in bf16 vs fp8_block (triton), and
   fp8_block (emulation) for reference.

Usage: python benchmarks/bench_gpu.py [--sizes 4096 8192] [--json out.json]
This is a script, not library code: part 3 builds the model through the engine's registry.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings

import torch
import triton

from kernels.fp8_gemm import fp8_gemm, fp8_gemm_ref
from kernels.fp8_quant import (
    act_quant,
    act_quant_ref,
    act_quant_t,
    act_quant_t_ref,
    weight_quant,
    weight_quant_ref,
)

GEMM_GPU_REL = 1e-3  # FP8 MMAs accumulate each 128-wide K-block in reduced precision on GPUs
LINEAR_GPU_REL = 1e-2  # FP8 linear vs emulation: GEMM differences can flip E4M3 roundings of dY
WARMUP, ITERS = 5, 20
TRAIN_WARMUP, TRAIN_ITERS = 3, 10
MODEL_100M = dict(dim=768, num_layers=14, num_heads=12, max_seq_len=1024, vocab_size=256)
TRAIN_BATCH, TRAIN_SEQ = 8, 1024


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def _median_ms(fn, warmup: int = WARMUP, iters: int = ITERS) -> float:
    """Median of `iters` CUDA-event-timed calls after `warmup` calls (autotuning included)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def check_kernels(dev: torch.device) -> list[tuple[str, str, bool]]:
    """(check, measured, passed) for every kernel against its reference."""
    rows = []
    x = torch.randn(512, 1000, device=dev) * torch.logspace(-6, 3, 1000, device=dev)
    for fmt in (None, "ue8m0"):
        for name, kern, ref, inp in [
            ("act_quant", act_quant, act_quant_ref, x),
            ("act_quant_t", act_quant_t, act_quant_t_ref, x),
            ("weight_quant", weight_quant, weight_quant_ref, x),
        ]:
            (q, s), (q_r, s_r) = kern(inp, fmt), ref(inp, fmt)
            diff = (q.view(torch.uint8) != q_r.view(torch.uint8)).float().mean().item()
            ok = diff == 0 and torch.equal(s, s_r)
            rows.append((f"{name} fmt={fmt}", f"mismatched codes {diff:.2e}", ok))
    for m, n, k in [(1024, 768, 2048), (200, 130, 300)]:
        a, a_s = act_quant(torch.randn(m, k, device=dev))
        w = torch.randn(n, k, device=dev) * 0.02
        for b_block, (b, b_s) in [(128, weight_quant(w)), (1, act_quant(w))]:
            out = fp8_gemm(a, a_s, b, b_s, b_block, torch.float32)
            ref = fp8_gemm_ref(a, a_s, b, b_s, b_block, torch.float32)
            err = _rel(out, ref)
            rows.append(
                (
                    f"fp8_gemm {m}x{n}x{k} b_block={b_block} fp32",
                    f"rel {err:.2e}",
                    err <= GEMM_GPU_REL,
                )
            )
            err = _rel(fp8_gemm(a, a_s, b, b_s, b_block, torch.bfloat16), ref)
            rows.append(
                (
                    f"fp8_gemm {m}x{n}x{k} b_block={b_block} bf16",
                    f"rel {err:.2e}",
                    err <= GEMM_GPU_REL + 2.0**-8,
                )
            )
    rows += check_fp8_linear(dev)
    return rows


def _precision(name: str, dev: torch.device, **fields):
    from ablate import registry
    from ablate.core.config import from_dict

    cfg = from_dict({"train": {"precision": {"name": name, **fields}}})
    return registry.build(cfg.train.precision, dev)


def check_fp8_linear(dev: torch.device) -> list[tuple[str, str, bool]]:
    """The fp8_block linear with Triton kernels vs its emulation: output, dX, dW."""
    lin = torch.nn.Linear(1024, 768, bias=False, device=dev)
    x = torch.randn(4, 300, 1024, device=dev)
    dy = torch.randn(4, 300, 768, device=dev)
    results = {}
    for backend in ("triton", "emulation"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer = _precision("fp8_block", dev, backend=backend).apply(torch.nn.Sequential(lin))[0]
        lin.weight.grad = None
        xi = x.clone().requires_grad_()
        y = layer(xi)
        y.backward(dy)
        results[backend] = (y.detach(), xi.grad, lin.weight.grad.clone())
    rows = []
    for name, got, want in zip(("y", "dX", "dW"), results["triton"], results["emulation"]):
        err = _rel(got, want)
        rows.append(
            (f"fp8 linear {name} triton vs emulation", f"rel {err:.2e}", err <= LINEAR_GPU_REL)
        )
    return rows


def bench_gemm(dev: torch.device, size: int) -> dict[str, float | str]:
    """Milliseconds per C = A B^T at size^3 for each implementation."""
    x = torch.randn(size, size, device=dev)
    w = torch.randn(size, size, device=dev) * 0.02
    a, a_s = act_quant(x)
    b, b_s = weight_quant(w)
    xb, wb = x.bfloat16(), w.bfloat16()
    out = {
        "fp8_gemm (triton, 1x128 x 128x128)": _median_ms(
            lambda: fp8_gemm(a, a_s, b, b_s, 128, torch.bfloat16)
        )
    }
    out["bf16 torch.matmul"] = _median_ms(lambda: xb @ wb.t())
    one = torch.ones((), device=dev)
    scaled = {
        "torch._scaled_mm per-tensor": (one, one),
        "torch._scaled_mm rowwise": (
            torch.ones(size, 1, device=dev),
            torch.ones(1, size, device=dev),
        ),
    }
    for name, (sa, sb) in scaled.items():
        try:
            out[name] = _median_ms(
                lambda sa=sa, sb=sb: torch._scaled_mm(
                    a, b.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16
                )
            )
        except (RuntimeError, TypeError) as e:  # unsupported on this GPU / torch build
            out[name] = f"n/a ({str(e).splitlines()[0][:60]})"
    return out


def bench_train(dev: torch.device) -> dict[str, dict[str, float]]:
    """Median step time of a ~100M-parameter model per precision arm."""
    from ablate.core.config import ModelConfig
    from ablate.core.model import Transformer

    arms = {
        "bf16": ("bf16", {}),
        "fp8_block (triton)": ("fp8_block", {"backend": "triton"}),
        "fp8_block (emulation)": ("fp8_block", {"backend": "emulation"}),
    }
    results = {}
    for label, (name, fields) in arms.items():
        torch.manual_seed(0)
        prec = _precision(name, dev, **fields)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = prec.apply(Transformer(ModelConfig(**MODEL_100M)).to(dev))
        opt = prec.build_optimizer([{"params": list(model.parameters())}], lr=1e-4)
        idx = torch.randint(0, MODEL_100M["vocab_size"], (TRAIN_BATCH, TRAIN_SEQ + 1), device=dev)

        def step(model=model, prec=prec, opt=opt, idx=idx):
            with prec.autocast():
                _, loss = model(idx[:, :-1], idx[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        torch.cuda.reset_peak_memory_stats(dev)
        ms = _median_ms(step, TRAIN_WARMUP, TRAIN_ITERS)
        results[label] = {
            "ms_per_step": ms,
            "tokens_per_s": TRAIN_BATCH * TRAIN_SEQ / ms * 1e3,
            "params_m": model.num_params() / 1e6,
            "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 2**30,
        }
        del model, opt
        torch.cuda.empty_cache()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; the CPU tests cover the kernels in the interpreter")
        return 2
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(dev)
    print(f"GPU: {gpu} | torch {torch.__version__} | triton {triton.__version__}")
    report = {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__}
    checks = check_kernels(dev)
    print("\n## Kernel checks (compiled) vs references")
    for name, value, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<45} {value}")
    report["checks"] = [dict(check=n, value=v, passed=ok) for n, v, ok in checks]
    report["gemm"] = {}
    for size in args.sizes:
        res = bench_gemm(dev, size)
        report["gemm"][size] = res
        flops = 2 * size**3
        print(f"\n## GEMM {size}^3 ({gpu}), median of {ITERS} after {WARMUP} warm-up")
        print(f"{'implementation':<40} {'ms':>9} {'TFLOP/s':>9} {'vs bf16':>8}")
        base = res["bf16 torch.matmul"]
        for name, ms in res.items():
            if isinstance(ms, str):
                print(f"{name:<40} {ms}")
                continue
            print(f"{name:<40} {ms:9.3f} {flops / ms / 1e9:9.1f} {base / ms:7.2f}x")
    if not args.skip_train:
        res = bench_train(dev)
        report["train"] = res
        print(f"\n## Training step, {MODEL_100M}, batch {TRAIN_BATCH} x {TRAIN_SEQ} ({gpu})")
        print(f"{'precision':<24} {'params M':>9} {'ms/step':>9} {'tok/s':>10} {'peak GB':>8}")
        for name, r in res.items():
            print(
                f"{name:<24} {r['params_m']:9.1f} {r['ms_per_step']:9.1f} "
                f"{r['tokens_per_s']:10.0f} {r['peak_mem_gb']:8.1f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
