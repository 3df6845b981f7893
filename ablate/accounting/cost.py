"""GPU-hours and cost of a token budget from training FLOPs per token, a peak and an MFU.

hours = tokens * train FLOPs per token / (MFU * peak FLOP/s) / 3600; the inverse gives the MFU
that measured hours imply. Peaks (`ablate.accounting.peaks`) are dense (no 2:4 sparsity)
tensor-core FLOP/s of the SXM parts from the vendors' datasheets.
"""

from __future__ import annotations

import re

from ablate.accounting.peaks import PEAKS

SECONDS_PER_HOUR = 3600.0
DEFAULT_PRICE = 2.0  # dollars per GPU-hour (DeepSeek-V3 §1's H800 rental price)
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str) -> float:
    """'14.8T' -> 1.48e13; suffixes K, M, B (or G), T; plain numbers too."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*", text.lower())
    if not m:
        raise ValueError(f"{text!r} is not a count (e.g. 14.8T, 2.664M, 300B)")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def peak(gpu: str, dtype: str) -> float:
    """Peak dense FLOP/s of `gpu` at `dtype`."""
    if gpu not in PEAKS:
        raise ValueError(f"--gpu {gpu!r}: known GPUs are {', '.join(PEAKS)}")
    if dtype not in PEAKS[gpu]:
        raise ValueError(
            f"--peak-dtype {dtype!r}: {gpu} peaks are known for {', '.join(PEAKS[gpu])}"
        )
    return PEAKS[gpu][dtype]


def gpu_hours(tokens: float, train_flops_per_token: float, peak_flops: float, mfu: float) -> float:
    """GPU-hours to train `tokens` at utilisation `mfu` of `peak_flops`."""
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu {mfu}: must be in (0, 1]")
    return tokens * train_flops_per_token / (mfu * peak_flops) / SECONDS_PER_HOUR


def implied_mfu(tokens: float, train_flops_per_token: float, peak_flops: float, hours: float):
    """The utilisation at which `tokens` take `hours` GPU-hours."""
    if hours <= 0:
        raise ValueError(f"--gpu-hours {hours}: must be > 0")
    return tokens * train_flops_per_token / (hours * SECONDS_PER_HOUR * peak_flops)
