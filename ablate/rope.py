"""Rotary position embeddings (RoPE), interleaved-pair convention as in DeepSeek's code.

Pairs (x[2i], x[2i+1]) are viewed as complex numbers and multiplied by e^{i pos f_i},
f_i = theta^(-2i/R). The "half" layout (Llama's rotate-half, pairs (x[i], x[i+R/2])) exists
only so tests can show the two differ. Shapes: T positions, R rotated dims, P = R/2 pairs.
"""

from __future__ import annotations

import torch


def rope_table(rot_dim: int, max_len: int, theta: float,
               freqs_P: torch.Tensor | None = None) -> torch.Tensor:
    """Complex rotations e^{i pos f}, shape (max_len, rot_dim/2), complex64.

    `freqs_P` replaces the plain frequencies (e.g. YaRN-scaled ones).
    """
    if rot_dim % 2:
        raise ValueError(f"RoPE needs an even number of dims, got {rot_dim}")
    if freqs_P is None:
        freqs_P = theta ** (-torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)
    angles_TP = torch.outer(torch.arange(max_len, dtype=torch.float64), freqs_P.double())
    return torch.polar(torch.ones_like(angles_TP), angles_TP).to(torch.complex64)


def apply_rope(x_BTHR: torch.Tensor, rot_TP: torch.Tensor,
               layout: str = "interleaved") -> torch.Tensor:
    """Rotate the last dim of x (B, T, H, R) by `rot_TP`, already sliced to x's positions."""
    dtype = x_BTHR.dtype
    rot = rot_TP[:, None, :]  # broadcast over heads
    if layout == "interleaved":
        xc = torch.view_as_complex(x_BTHR.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(xc * rot).flatten(-2).to(dtype)
    if layout == "half":
        x1, x2 = x_BTHR.float().chunk(2, dim=-1)
        cos, sin = rot.real, rot.imag
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(dtype)
    raise ValueError(f"unknown RoPE layout {layout!r}")
