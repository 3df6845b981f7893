"""FP8 grouped GEMM of stacked expert weights (DeepSeek-V3 §3.3: expert GEMMs run in FP8):
a drop-in for `ablate.nn.grouped.GroupedLinear` with the three GEMMs of each expert quantized
as one FP8 linear layer's (`ablate.nn.fp8_recipe.Recipe`).

Per expert e (rows ends[e-1]:ends[e] of the sorted assignments): Fprop x_e W_e^T with x in
1x128 tiles per routed token and W_e in its own 128x128 blocks; Dgrad dy_e W_e; Wgrad
dy_e^T x_e with 128x1 tiles over that expert's tokens only (tiles never straddle experts).
Both backends loop over experts calling the dense kernels (no grouped FP8 kernel yet).
Shapes: A assignments, E experts, I/O a matmul's in/out widths.
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.nn.eager import eager
from ablate.nn.fp8_recipe import QuantStats, Recipe, RecordsStats

GEMM_DTYPES = (torch.bfloat16, torch.float32)


def gemm_dtype_of(x: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(output dtype, GEMM output dtype) of an FP8 op called inside or outside autocast."""
    dev = x.device.type
    out = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    return out, out if out in GEMM_DTYPES else torch.float32


def _segments(ends_E: torch.Tensor) -> list[tuple[int, int, int]]:
    """(expert, start, end) of every expert that received assignments."""
    ends = ends_E.tolist()
    starts = [0, *ends[:-1]]
    return [(e, s, t) for e, (s, t) in enumerate(zip(starts, ends, strict=True)) if t > s]


class _FP8GroupedFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_AI, w_EOI, ends_E, layer):
        out_dtype, gemm_dtype = gemm_dtype_of(x_AI)
        r, record = layer.recipe, layer.should_record()
        segs = _segments(ends_E)
        with torch.autocast(x_AI.device.type, enabled=False):
            x_AI = x_AI.contiguous()
            qx, sx = r.act(x_AI)  # 1x128 tiles are per row: per routed token
            wq = {e: r.weight(w_EOI[e].detach().contiguous()) for e, _, _ in segs}
            y_AO = x_AI.new_zeros(x_AI.shape[0], w_EOI.shape[1], dtype=gemm_dtype)
            for e, s, t in segs:
                y_AO[s:t] = r.gemm(qx[s:t], sx[s:t], *wq[e], gemm_dtype)
            if record:
                layer.stats.add_error("act", x_AI, r.dequant(qx, sx))
                for e in list(wq)[:1]:  # one expert's weight stands for all
                    layer.stats.add_error("weight", w_EOI[e], r.dequant(*wq[e]))
        cached = (qx, sx) if layer.cache_fp8 else (x_AI,)
        ctx.save_for_backward(w_EOI, *cached)
        ctx.wq, ctx.segs, ctx.layer, ctx.record = wq, segs, layer, record
        ctx.x_dtype, ctx.gemm_dtype = x_AI.dtype, gemm_dtype
        return y_AO.to(out_dtype)

    @staticmethod
    def backward(ctx, dy_AO):
        r, layer = ctx.layer.recipe, ctx.layer
        w_EOI, *cached = ctx.saved_tensors
        dx = dw = None
        with torch.autocast(dy_AO.device.type, enabled=False):
            dy_AO = dy_AO.contiguous()
            if ctx.needs_input_grad[0]:
                qdy, sdy = r.grad(dy_AO)
                dx = dy_AO.new_zeros(dy_AO.shape[0], w_EOI.shape[2], dtype=ctx.gemm_dtype)
                for e, s, t in ctx.segs:
                    wt = r.weight_t(w_EOI[e], ctx.wq[e][0], ctx.wq[e][1])
                    dx[s:t] = r.gemm(qdy[s:t], sdy[s:t], *wt, ctx.gemm_dtype)
                dx = dx.to(ctx.x_dtype)
                if ctx.record:
                    layer.stats.add_error("grad", dy_AO, r.dequant(qdy, sdy))
            if ctx.needs_input_grad[1]:
                x_AI = r.dequant(*cached) if layer.cache_fp8 else cached[0]
                dw = torch.zeros(w_EOI.shape, dtype=torch.float32, device=w_EOI.device)
                for e, s, t in ctx.segs:
                    qdy_t, sdy_t = r.grad_t(dy_AO[s:t])
                    qx_t, sx_t = r.act_t(x_AI[s:t].contiguous())
                    dw[e] = r.gemm(qdy_t, sdy_t, qx_t, sx_t, 1, torch.float32)
        return dx, dw, None, None


class FP8GroupedLinear(RecordsStats, nn.Module):
    """`GroupedLinear` computed with `_FP8GroupedFn` (it owns no parameters either)."""

    def __init__(
        self, recipe: Recipe, *, backend: str, cache_fp8: bool, stats: QuantStats, stats_every: int
    ) -> None:
        super().__init__()
        self.recipe, self.backend, self.cache_fp8 = recipe, backend, cache_fp8
        self.stats, self.stats_every, self.num_calls = stats, stats_every, 0

    @eager  # under train.compile, as FP8Linear.forward says
    def forward(self, x_AI: torch.Tensor, w_EOI: torch.Tensor, ends_E: torch.Tensor):
        return _FP8GroupedFn.apply(x_AI, w_EOI, ends_E, self)

    def extra_repr(self) -> str:
        return f"fp8_backend={self.backend}, granularity={self.recipe.granularity}"
