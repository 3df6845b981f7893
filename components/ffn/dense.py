"""Dense SwiGLU feed-forward: w2(silu(w1 x) * w3 x) (Shazeer 2020, "GLU Variants").

Shapes (docs/design.md#shapes): B batch, T time, D model width, F hidden width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.interfaces import FFN, BuildContext
from ablate.nn.swiglu import SwiGLU, swiglu_width
from ablate.registry import register


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
