"""Where a training step's time goes: our modern block against GPT-2's, side by side.

At nanoGPT's CPU size (`sweeps/base/shakespeare_char.yaml`, one thread) times, in one process
and interleaved turns (`ablate.study.speed.interleave`), AdamW steps of: our model; the
GPT-2-style reference of `shakespeare_quality.py` (LayerNorm, GELU, learned positions); and
our model with one part swapped out to price it: RMSNorm -> `F.rms_norm` (autograd's
backward, as before issue 17), RMSNorm -> LayerNorm, RoPE -> none (the
rotation skipped), SwiGLU -> a GELU MLP of 4x width; with `--compile` also ours under
`torch.compile` (inductor; compiling falls in the untimed warm-up turn). Medians and
interquartile ranges of wall and process CPU ms per step; ratios are against the reference
measured in the same turns, so they stay meaningful on a shared machine (the load average is
printed before and after).

    ABLATE_DATA_DIR=../shared/data python -m benchmarks.bench_block [--reps 7] [--steps 5]
        [--profile] [--eval] [--compile]
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from ablate.core import runtime
from ablate.core.config import load_config
from ablate.core.data import train_batch, val_batches
from ablate.core.evaluate import evaluate
from ablate.core.trial import build, param_groups
from ablate.report.speed import cell, summarize
from ablate.study.speed import BenchSpec, Clock, interleave
from benchmarks.shakespeare_quality import CONFIG, GPT2Ref
from components.attention import mha


class TorchRMSNorm(nn.Module):
    """RMSNorm through `F.rms_norm` and autograd (what `components/norm/rmsnorm.py` replaced)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.weight, self.eps = norm.weight, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)


class GeluMLP(nn.Module):
    """GPT-2's MLP (4x width, GELU), in place of a dense SwiGLU FFN."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(dim, 4 * dim, bias=False), nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.fc(x_BTD)))


def _swap(model: nn.Module, match, make) -> nn.Module:
    for name, child in list(model.named_children()):
        if match(child):
            setattr(model, name, make(child))
        else:
            _swap(child, match, make)
    return model


def variants(cfg, vocab: int, compiled: bool = False) -> dict[str, nn.Module]:
    """The models compared, each from the same seed."""

    def ours() -> nn.Module:
        return build(cfg, torch.device("cpu"))[1]

    dim = cfg.model.dim
    torch.manual_seed(0)
    return {
        "ours": ours(),
        "gpt2_ref": GPT2Ref(vocab),
        "ours_F.rms_norm": _swap(ours(), lambda m: type(m).__name__ == "RMSNorm", TorchRMSNorm),
        "ours_layernorm": _swap(
            ours(), lambda m: type(m).__name__ == "RMSNorm", lambda m: nn.LayerNorm(dim, bias=False)
        ),
        "ours_gelu_mlp": _swap(ours(), lambda m: hasattr(m, "w13"), lambda m: GeluMLP(dim)),
        "ours_no_rope": ours(),  # its turns skip the rotation (see `work`)
        **({"ours_compiled": runtime.compiled(ours(), True)} if compiled else {}),
    }


def _eval_cost(cfg, corpus, model: nn.Module, precision) -> None:
    """Building the validation windows against one whole evaluation."""
    t0 = time.perf_counter()
    batches = sum(1 for _ in val_batches(corpus, cfg.data))
    t1 = time.perf_counter()
    evaluate(model, corpus, cfg, precision)
    t2 = time.perf_counter()
    print(f"evaluation: {batches} batches; windows {1e3 * (t1 - t0):.1f} ms of {t2 - t1:.2f} s")


def _profile(cfg, corpus, model: nn.Module) -> None:
    """The operators that take a training step's time (self CPU time, top 15)."""
    from torch.profiler import profile

    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    with profile(record_shapes=True) as prof:
        for s in range(5):
            x_BT, y_BT = train_batch(corpus, cfg.data, 0, s)
            model(x_BT, y_BT)[1].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=32
    )
    print(table)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="also torch.profiler's top ops of ours")
    p.add_argument("--eval", action="store_true", help="also the cost of one evaluation")
    p.add_argument("--compile", action="store_true", help="also ours under torch.compile")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(CONFIG, ["train.threads=1"])
    corpus, ours, precision = build(cfg, torch.device("cpu"))
    if args.eval:
        _eval_cost(cfg, corpus, ours, precision)
    if args.profile:
        _profile(cfg, corpus, ours)
    models = variants(cfg, corpus.tokenizer.vocab_size, args.compile)
    opts = {k: torch.optim.AdamW(param_groups(m, 0.1), lr=1e-3) for k, m in models.items()}
    step = {k: 0 for k in models}

    def work(name: str) -> None:
        model, opt = models[name], opts[name]
        skip = name == "ours_no_rope"
        with mock.patch.object(mha, "apply_rope", lambda x, rot: x) if skip else nullcontext():
            _steps(model, opt, name)

    def _steps(model: nn.Module, opt, name: str) -> None:
        for _ in range(args.steps):
            step[name] += 1
            x_BT, y_BT = train_batch(corpus, cfg.data, 0, step[name])
            _, loss = model(x_BT, y_BT)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    load0 = os.getloadavg()
    spec = BenchSpec(repetitions=args.reps, warmup=1)
    times = interleave(list(models), work, spec, Clock())
    load1 = os.getloadavg()
    wall = {k: summarize([1e3 * w / args.steps for w in t["wall_s"]]) for k, t in times.items()}
    cpu = {k: summarize([1e3 * c / args.steps for c in t["cpu_s"]]) for k, t in times.items()}
    ref = wall["gpt2_ref"]["median"]
    turns = f"{args.reps} turns x {args.steps} steps"
    print(f"load average {load0[0]:.2f} -> {load1[0]:.2f}; 1 thread; {turns}")
    head = f"{'wall ms/step [IQR]':>24s} {'cpu ms/step [IQR]':>24s}"
    print(f"{'model':20s} {'params':>9s} {head} {'/ref':>6s}")
    for k, m in models.items():
        n = sum(p.numel() for p in m.parameters())
        ratio = wall[k]["median"] / ref
        print(f"{k:20s} {n:9,d} {cell(wall[k]):>24s} {cell(cpu[k]):>24s} {ratio:6.3f}")


if __name__ == "__main__":
    main()
