"""RMSNorm: x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019); gains start at 1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.interfaces import Norm
from ablate.registry import register


@register("norm", "rmsnorm")
class RMSNorm(Norm):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        eps: float = 1e-6

        def check(self, root) -> None:
            if self.eps <= 0:
                raise ValueError("eps must be positive")

    def __init__(self, cfg: Config, dim: int) -> None:
        super().__init__()
        self.eps = cfg.eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)
