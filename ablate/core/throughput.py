"""A trial's compute figures for its summary: FLOPs per token, achieved FLOP/s, MFU.

- `activated_params`, `train_flops_per_token`, `train_flops`: `ablate.accounting.flops` (model
  FLOPs: forward + backward at `data.seq_len`, the same count as `ablate inspect`).
- `achieved_flops_per_s` = `train_flops_per_token` x `tokens_per_s`, the summary's training
  throughput over the global batch (tokens trained over the step time, evaluations excluded,
  without each process's first steps: compilation and allocator warm-up).
- `peak_flops_per_s`: the dense peak of every device the trial ran on (`ablate.accounting.peaks`),
  `mfu` = achieved / peak; both None where the peak is not known (the CPU, unlisted GPUs).
"""

from __future__ import annotations

from typing import Any

import torch

from ablate.accounting.flops import trial_flops
from ablate.accounting.peaks import device_peak, mfu
from ablate.core.config import replace


def device_name(device: torch.device) -> str | None:
    """The CUDA device's name ("NVIDIA H200"); None off CUDA."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def figures(run: Any, tokens: int, tokens_per_s: float | None) -> dict[str, Any]:
    """The compute figures of a trial (`ablate.core.trial.Trial`) that trained `tokens`."""
    counted = trial_flops(replace(run.cfg, model=run.model.cfg), tokens)
    per_token = counted.get("train_flops_per_token")
    achieved = per_token * tokens_per_s if per_token and tokens_per_s else None
    compute_dtype = run.precision.summary().get("compute_dtype")
    one = device_peak(device_name(run.device), compute_dtype, run.runtime.get("tf32"))
    peak = one * run.ranks.world if one else None
    return {
        **counted,
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": peak,
        "mfu": mfu(achieved, peak),
    }
