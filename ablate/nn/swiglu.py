"""SwiGLU MLP: w2(silu(w1 x) * w3 x) (Shazeer 2020, "GLU Variants"), for dense FFNs and experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swiglu_width(dim: int, multiple_of: int = 32) -> int:
    """LLaMA's default hidden width: 2/3 of 4*dim (same parameters as a 4x GELU MLP)."""
    return multiple_of * -(-(8 * dim // 3) // multiple_of)


class SwiGLU(nn.Module):
    """The bare SwiGLU MLP, reusable by other FFN components (e.g. experts)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden_dim, bias=False)  # gate and up fused
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        gate_BTF, up_BTF = self.w13(x_BTD).chunk(2, dim=-1)
        return self.w2(F.silu(gate_BTF) * up_BTF)
