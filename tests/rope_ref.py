"""RoPE written out in closed form, without `ablate.nn.rope`: a reference for the tests.

Interleaved pairs (x[2i], x[2i+1]) at position p turn by the angle p * f_i with
f_i = theta^(-2i/R) (or YaRN's f'_i): the 2x2 rotation [[cos, -sin], [sin, cos]].
"""

from __future__ import annotations

import math

import torch


def plain_freqs(rot_dim: int, theta: float) -> list[float]:
    return [theta ** (-2 * i / rot_dim) for i in range(rot_dim // 2)]


def yarn_freqs_ref(rot_dim: int, theta: float, factor: float, low: int, high: int) -> list[float]:
    """YaRN (Peng et al. 2023): pair i keeps f_i below `low`, gets f_i / factor above `high`,
    and a linear blend between (DeepSeek-V3's ramp over pair indices)."""
    out = []
    for i, f in enumerate(plain_freqs(rot_dim, theta)):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        out.append(f * (1 - ramp) + f / factor * ramp)
    return out


def rotate_ref(x_BTHR: torch.Tensor, positions: list[int], freqs: list[float]) -> torch.Tensor:
    """Rotate each interleaved pair of the last dim of x (B, T, H, R) at `positions` (T)."""
    x = x_BTHR.double()
    out = torch.empty_like(x)
    for t, pos in enumerate(positions):
        for i, f in enumerate(freqs):
            c, s = math.cos(pos * f), math.sin(pos * f)
            a, b = x[:, t, :, 2 * i], x[:, t, :, 2 * i + 1]
            out[:, t, :, 2 * i] = a * c - b * s
            out[:, t, :, 2 * i + 1] = a * s + b * c
    return out.to(x_BTHR.dtype)
