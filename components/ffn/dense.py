"""Dense SwiGLU feed-forward: w2(silu(w1 x) * w3 x) (Shazeer 2020, "GLU Variants").

Shapes: B batch, T time, D model width, F hidden width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.interfaces import FFN, BuildContext
from ablate.registry import register


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


@register("ffn", "dense")
class Dense(FFN):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        hidden_dim: int = 0  # F; 0 = 8/3 * model.dim rounded up to a multiple of 32

        def check(self, root) -> None:
            if self.hidden_dim < 0:
                raise ValueError("hidden_dim must be >= 0")

    def __init__(self, cfg: Config, ctx: BuildContext) -> None:
        super().__init__()
        self.mlp = SwiGLU(ctx.model.dim, cfg.hidden_dim or swiglu_width(ctx.model.dim))

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.mlp(x_BTD)
