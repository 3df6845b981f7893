"""Plain against speculative greedy decoding of the same prompts, timed in one run."""

from __future__ import annotations

import time

import torch
from torch import nn

from ablate.infer.generate import generate
from ablate.infer.speculative import SpecStats, find_drafter, speculative_generate


@torch.no_grad()
def compare_decoding(
    model: nn.Module, prompts_BT: torch.Tensor, max_new_tokens: int
) -> dict[str, float]:
    """Plain vs speculative greedy decoding of each prompt (batch 1), timed in one run.

    The drafter is the one `find_drafter(model)` returns. Returns per-draft acceptance
    `spec_accept_d<k>`, `spec_tokens_per_forward`, decode tokens/s of both, their ratio
    `spec_speedup` and `spec_identical` (1.0 when every speculative output equals the plain
    greedy one, as it must).
    """
    drafter = find_drafter(model)

    def sync() -> None:  # GPU work is asynchronous: wait for it before reading the clock
        if prompts_BT.is_cuda:
            torch.cuda.synchronize(prompts_BT.device)

    warm_1T = prompts_BT[:1, : min(4, prompts_BT.shape[1])]
    generate(model, warm_1T, 2)  # first-call allocations out of the timings
    speculative_generate(model, warm_1T, 2, drafter=drafter)
    sync()
    t0 = time.perf_counter()
    plain = [generate(model, p[None], max_new_tokens) for p in prompts_BT]
    sync()
    plain_s = time.perf_counter() - t0
    stats = SpecStats()
    t0 = time.perf_counter()
    spec = [
        speculative_generate(model, p[None], max_new_tokens, stats=stats, drafter=drafter)
        for p in prompts_BT
    ]
    sync()
    spec_s = time.perf_counter() - t0
    num_tokens = len(prompts_BT) * max_new_tokens
    out = {f"spec_accept_d{k + 1}": a for k, a in enumerate(stats.acceptance())}
    out.update(
        {
            "spec_tokens_per_forward": stats.tokens_per_forward(),
            "plain_decode_tokens_per_s": num_tokens / plain_s,
            "spec_decode_tokens_per_s": num_tokens / spec_s,
            "spec_speedup": plain_s / spec_s,
            "spec_identical": float(all(torch.equal(a, b) for a, b in zip(plain, spec))),
        }
    )
    return out
