"""Rotary position embeddings (RoPE), interleaved-pair convention as in DeepSeek's code.

Pairs (x[2i], x[2i+1]) are viewed as complex numbers and multiplied by e^{i pos f_i},
f_i = theta^(-2i/R). The "half" layout (Llama's rotate-half, pairs (x[i], x[i+R/2])) exists
only so tests can show the two differ. YaRN (Peng et al. 2023) rescales the frequencies for
context extension. Shapes (docs/design.md#shapes): T positions, R rotated dims, P = R/2 pairs,
B batch, H heads.
"""

from __future__ import annotations

import math

import torch

YARN_MIN_RAMP_SPAN = 1e-3  # ramp width used when low == high
YARN_MSCALE_SLOPE = 0.1  # m = 0.1 * mscale * ln(factor) + 1 [V3 §4.3]


def rope_table(
    rot_dim: int, max_len: int, theta: float, freqs_P: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotations e^{i pos f} as (cos, sin) pairs, shape (max_len, rot_dim/2, 2), fp32.

    Stored as real numbers so `module.to(dtype)` cannot drop the imaginary part.

    `freqs_P` replaces the plain frequencies (e.g. YaRN-scaled ones).
    """
    if rot_dim % 2:
        raise ValueError(f"RoPE needs an even number of dims, got {rot_dim}")
    if freqs_P is None:
        freqs_P = theta ** (-torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)
    angles_TP = torch.outer(torch.arange(max_len, dtype=torch.float64), freqs_P.double())
    return torch.stack((angles_TP.cos(), angles_TP.sin()), dim=-1).float()


def apply_rope(
    x_BTHR: torch.Tensor, rot_TP: torch.Tensor, layout: str = "interleaved"
) -> torch.Tensor:
    """Rotate the last dim of x (B, T, H, R) by `rot_TP`, already sliced to x's positions."""
    dtype = x_BTHR.dtype
    rot = torch.view_as_complex(rot_TP.float().contiguous())[:, None, :]  # broadcast over heads
    if layout == "interleaved":
        xc = torch.view_as_complex(x_BTHR.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(xc * rot).flatten(-2).to(dtype)
    if layout == "half":
        x1, x2 = x_BTHR.float().chunk(2, dim=-1)
        cos, sin = rot.real, rot.imag
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(dtype)
    raise ValueError(f"unknown RoPE layout {layout!r}")


def yarn_correction_range(
    rot_dim: int, theta: float, original_len: int, beta_fast: float, beta_slow: float
) -> tuple[int, int]:
    """YaRN's (low, high) pair indices: pairs <= low keep their frequency, >= high are scaled.

    corr(r) = R ln(L_orig / (2 pi r)) / (2 ln theta); low = floor(corr(beta_fast)),
    high = ceil(corr(beta_slow)), clamped to [0, R-1] (DeepSeek-V3's `find_correction_range`).
    """

    def corr(rotations: float) -> float:
        return rot_dim * math.log(original_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    return max(math.floor(corr(beta_fast)), 0), min(math.ceil(corr(beta_slow)), rot_dim - 1)


def yarn_freqs(
    rot_dim: int, theta: float, factor: float, original_len: int, beta_fast: float, beta_slow: float
) -> torch.Tensor:
    """YaRN-scaled frequencies (P,), float64, for `rope_table(freqs_P=...)`.

    f'_i = f_i (1 - ramp_i) + (f_i / factor) ramp_i with ramp_i = clamp((i-low)/(high-low), 0, 1).
    """
    freqs_P = theta ** (-torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)
    low, high = yarn_correction_range(rot_dim, theta, original_len, beta_fast, beta_slow)
    span = max(high - low, YARN_MIN_RAMP_SPAN)  # DS-code widens an empty ramp the same way
    ramp_P = ((torch.arange(rot_dim // 2, dtype=torch.float64) - low) / span).clamp(0, 1)
    return freqs_P * (1 - ramp_P) + freqs_P / factor * ramp_P


def yarn_softmax_multiplier(factor: float, mscale: float) -> float:
    """YaRN attention temperature m^2, m = 0.1 mscale ln(factor) + 1; multiplies softmax_scale."""
    m = YARN_MSCALE_SLOPE * mscale * math.log(factor) + 1.0
    return m * m
