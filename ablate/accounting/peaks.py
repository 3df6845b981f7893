"""Peak dense FLOP/s of known GPUs and MFU (model FLOPs utilisation) against them.

Peaks are the vendors' datasheet figures for dense tensor-core math (no 2:4 sparsity) of the SXM
parts: H800 and H200 share the H100's compute, and the A100's PCIe part its SXM peaks. Parts
whose clocks give other peaks (H100 PCIe and NVL, H200 NVL) are not listed: no peak is known
for them, so no MFU is given. The CPU has no listed peak either.

MFU = achieved FLOP/s / (peak of the dtype the matmuls ran in x devices). The dtype is the
precision's `compute_dtype`: bf16 and fp16 (same tensor-core peak) count against `bf16`, fp32
against `tf32` where TF32 was on, else against plain `fp32` (CUDA cores). FP8 matmuls under a
bf16 compute dtype count against the bf16 peak, as the model FLOPs do not say which ran in FP8.
"""

from __future__ import annotations

import re

# GPU -> {dtype: peak dense FLOP/s}
PEAKS: dict[str, dict[str, float]] = {
    "h800": {"bf16": 989.4e12, "fp8": 1978.9e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "h100": {"bf16": 989.4e12, "fp8": 1978.9e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "h200": {"bf16": 989.4e12, "fp8": 1978.9e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "a100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
}
OTHER_CLOCKS = re.compile(r"pcie|nvl", re.IGNORECASE)  # variants with lower peaks than the SXM
TENSOR_CORE_16 = ("bfloat16", "float16")  # compute dtypes with the bf16 peak


def gpu_of(device_name: str) -> str | None:
    """The `PEAKS` key of a CUDA device name ("NVIDIA H200" -> "h200"); None if not listed."""
    name = device_name.lower()
    for gpu in PEAKS:
        if re.search(rf"\b{gpu}\b", name) and (gpu == "a100" or not OTHER_CLOCKS.search(name)):
            return gpu
    return None


def peak_dtype(compute_dtype: str | None, tf32: bool | None) -> str | None:
    """The `PEAKS` dtype a trial's matmuls count against; None for an unknown compute dtype."""
    if compute_dtype in TENSOR_CORE_16:
        return "bf16"
    if compute_dtype == "float32":
        return "tf32" if tf32 else "fp32"
    return None


def device_peak(device_name: str | None, compute_dtype: str | None, tf32: bool | None):
    """Peak dense FLOP/s of one device for this compute, or None where it is not known."""
    gpu = gpu_of(device_name) if device_name else None
    dtype = peak_dtype(compute_dtype, tf32)
    if gpu is None or dtype is None:
        return None
    return PEAKS[gpu].get(dtype)


def mfu(achieved_flops_per_s: float | None, peak_flops_per_s: float | None) -> float | None:
    """Achieved over peak FLOP/s; None where either is unknown."""
    if not achieved_flops_per_s or not peak_flops_per_s:
        return None
    return achieved_flops_per_s / peak_flops_per_s
