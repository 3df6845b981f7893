"""FP16 GEMMs emulated in fp32, for CPUs without fast float16 matmuls (there torch's fp16 mm
is ~10x slower than fp32): every operand is rounded to float16 (range included: a value past
65504 becomes inf, tiny ones subnormal or zero), the products are summed in fp32 as a tensor
core does, and the result is rounded to float16. Forward y = x W^T, Dgrad dx = dy W, Wgrad
dW = dy^T x: all three GEMMs, so gradient overflow happens where real fp16 training has it.
Shapes (docs/design.md#shapes): N tokens (batch x time), I input features, O output features.
"""

from __future__ import annotations

import fnmatch

import torch
from torch import nn


def round16(t: torch.Tensor) -> torch.Tensor:
    """`t` rounded to float16 and held in fp32 (overflow to inf, as a cast to fp16 does)."""
    return t.to(torch.float16).to(torch.float32)


class _FP16LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        x_NI = round16(x.reshape(-1, x.shape[-1]))
        w_OI = round16(weight)
        y_NO = x_NI @ w_OI.t()
        if bias is not None:
            y_NO = y_NO + round16(bias)
        ctx.save_for_backward(x_NI, w_OI)
        ctx.x_shape, ctx.has_bias = x.shape, bias is not None
        return round16(y_NO).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x_NI, w_OI = ctx.saved_tensors
        dy_NO = round16(dy.reshape(-1, dy.shape[-1]))
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = round16(dy_NO @ w_OI).view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            dw = round16(dy_NO.t() @ x_NI)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = round16(dy_NO.sum(0))
        return dx, dw, db


class FP16EmulatedLinear(nn.Linear):
    """An nn.Linear (same parameters and state-dict keys) whose GEMMs are emulated FP16."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(
            linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta"
        )
        self.weight, self.bias = linear.weight, linear.bias  # share, so ties survive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FP16LinearFn.apply(x, self.weight, self.bias)


def emulate_fp16(model: nn.Module, skip: tuple[str, ...]) -> tuple[list[str], dict[int, int]]:
    """Swap every plain nn.Linear whose dotted name matches no `skip` pattern for
    `FP16EmulatedLinear`; the names left in fp32, and {id(weight): bytes read} (2 per element)."""
    kept, read = [], {}
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not nn.Linear:
                continue
            if any(fnmatch.fnmatchcase(name, p) for p in skip):
                kept.append(name)
            else:
                setattr(parent, child_name, FP16EmulatedLinear(child))
                read[id(child.weight)] = child.weight.numel() * 2
    return kept, read
