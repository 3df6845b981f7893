"""Grouped GEMMs of stacked expert weights, and `GroupedLinear`, the stateless module through
which a component runs them so that precision transforms can swap it as they swap nn.Linear.

Shapes: A token-expert assignments sorted by expert, E experts, I/O a matmul's in/out widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.nn.eager import eager

GEMM_ALIGN_BYTES = 16  # grouped_mm needs row strides in multiples of 16 bytes


def grouped_linear(x_AI: torch.Tensor, w_EOI: torch.Tensor, ends_E: torch.Tensor) -> torch.Tensor:
    """Rows `ends[e-1]:ends[e]` of x times w[e]^T, for every expert e at once: (A, O).

    One grouped GEMM (`F.grouped_mm`) on CPU and for bf16 on CUDA, when the widths keep rows
    16-byte aligned as its kernels require; otherwise `looped_linear`.
    """
    w_EOI = w_EOI.to(x_AI.dtype)
    aligned = all(n * x_AI.element_size() % GEMM_ALIGN_BYTES == 0 for n in w_EOI.shape[1:])
    if aligned and x_AI.dtype == torch.bfloat16:
        return F.grouped_mm(x_AI, w_EOI.transpose(-2, -1), offs=ends_E.to(torch.int32))
    if aligned and x_AI.device.type == "cpu":
        return _eager_grouped_mm(x_AI, w_EOI.transpose(-2, -1), ends_E.to(torch.int32))
    return looped_linear(x_AI, w_EOI, ends_E)


@eager
def _eager_grouped_mm(x_AI: torch.Tensor, w_EIO: torch.Tensor, ends_E: torch.Tensor):
    """The CPU's fp32 grouped GEMM, always run eagerly: `torch.compile`'s shape function for
    grouped_mm accepts only bf16 inputs (a compiled fp32 MoE failed while tracing), so a
    compiled forward calls it across a graph break."""
    return F.grouped_mm(x_AI, w_EIO, offs=ends_E)


def looped_linear(x_AI: torch.Tensor, w_EOI: torch.Tensor, ends_E: torch.Tensor) -> torch.Tensor:
    """Same as `grouped_linear` with one matmul per expert (each over all its tokens)."""
    starts = [0, *ends_E[:-1].tolist()]
    return torch.cat(
        [
            x_AI[s:e] @ w_EOI[i].T.to(x_AI.dtype)
            for i, (s, e) in enumerate(zip(starts, ends_E.tolist(), strict=True))
        ]
    )


class GroupedLinear(nn.Module):
    """`grouped_linear` as a module. It owns no parameters (the caller passes its stacked
    weights, so state-dict keys stay the caller's); precision transforms replace it by type."""

    def forward(self, x_AI: torch.Tensor, w_EOI: torch.Tensor, ends_E: torch.Tensor):
        return grouped_linear(x_AI, w_EOI, ends_E)
