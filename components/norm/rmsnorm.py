"""RMSNorm: x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019); gains start at 1.

The forward is the same sequence of operations as `torch.nn.functional.rms_norm` (so its output
is bit-identical); the backward is written out to skip three of autograd's full-size passes
(the mean's expanded division, `x^1` and `2x`, each moved onto the (..., 1) statistics or
folded into exact scalings by 2) while rounding every element exactly as autograd does.
Shapes: x (..., D), statistics (..., 1), gain (D,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ablate.interfaces import Norm
from ablate.registry import register


class _RMSNormFn(torch.autograd.Function):
    """y = (x * r) * g with r = rsqrt(mean(x^2) + eps), in fp32; call as `apply(x, x, g, eps)`.

    x comes in twice so that its two gradient terms (through x * r, then through x^2) reach
    autograd's accumulation for x one after the other, as the two uses of x in the composite
    do: ((residual + term1) + term2) rounds differently from (residual + (term1 + term2)).
    """

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, x_again: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> torch.Tensor:
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(eps))
        n = x * r
        ctx.save_for_backward(x, weight, r, n)
        return n * weight

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight, r, n = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[2]:
            grad_w = (g * n).sum(tuple(range(g.dim() - 1)), keepdim=True).view_as(weight)
        if not ctx.needs_input_grad[0]:
            return None, None, grad_w, None
        gn = g * weight
        grad_r = (gn * x).sum(-1, keepdim=True)
        grad_s = grad_r * (r.pow(3) * -0.5)
        # autograd: ((grad_s / D) expanded) * (2 * x^1); the same roundings, on (..., 1) first
        t = (grad_s / x.shape[-1]) * 2.0
        return gn * r, x * t, grad_w, None


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
        x32 = x.float()
        return _RMSNormFn.apply(x32, x32, self.weight.float(), self.eps).to(x.dtype)
