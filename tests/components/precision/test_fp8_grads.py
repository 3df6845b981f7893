"""fp8_block Dgrad and Wgrad values vs fp32 autograd on non-square block grids whose blocks
differ in magnitude (W: one off-diagonal 128x128 block x8; x: blocks of 128 tokens x 128
features at 2^-2..2^3), so a scale applied to the wrong block cannot hide behind blocks that
all share one amax: transposing W's or x's block scales by a reshape gives dx or dW a relative
error of 1.1-1.2 here, against 0.036 when correct.

Bound. E4M3 keeps 3 mantissa bits, so round-to-nearest puts every normal-range element within
u = 2^-4 of itself (relative); per-tile scaling maps each tile's amax to 448, so only elements
below amax * 2^-6 / 448 hit the subnormal step, with an absolute error of at most half of it,
s * 2^-10. Elementwise |a' b' - a b| <= |da| |b| + |a| |db| + |da| |db| with |da| <= u|a| + s_a
2^-10 then bounds every entry of a GEMM of two quantized operands (`_gemm_bound`). Typical
errors are far smaller: independent roundings add in quadrature, each operand of Gaussian
data loses ~0.025 (tests/kernels/test_fp8_quant.py), the GEMM ~0.025 * sqrt(2) ~ 0.036 in
relative Frobenius norm whatever the block magnitudes, since every block keeps its own scale.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.precision.fp8_block import FP8Linear, QuantStats, _ops

U = 2.0**-4  # E4M3 relative rounding bound (3 mantissa bits, round to nearest)
SUB = 2.0**-10  # half the subnormal step 2^-9, in units of the tile scale
E4M3_MAX = 448.0
TILE = 128
REL_MAX = 0.06  # relative Frobenius error of one FP8 GEMM (typical 0.036, see above)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _block_magnitudes(rows: int, cols: int, block: tuple[int, int], seed: int) -> torch.Tensor:
    """(rows, cols) factors 2^e per (br, bc) block: e = 0 but for one off-diagonal block at
    e = 3 (x8) and, with a seed, a few more blocks at e = -2..2."""
    nr, nc = -(-rows // block[0]), -(-cols // block[1])
    exp = torch.zeros(nr, nc)
    if seed:
        g = torch.Generator().manual_seed(seed)
        exp = torch.randint(-2, 3, (nr, nc), generator=g).float() * (
            torch.rand(nr, nc, generator=g) < 0.3
        )
    exp[0, -1] = 3.0  # an off-diagonal block 8x larger than the others
    full = (2.0**exp).repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)
    return full[:rows, :cols]


def _err_bound(x: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """|x' - x| <= u |x| + s 2^-10 elementwise, s = tile amax / 448, tiles of `block`."""
    rows, cols = x.shape
    br, bc = block
    pad = torch.zeros(-(-rows // br) * br, -(-cols // bc) * bc)
    pad[:rows, :cols] = x.abs()
    amax = pad.view(pad.shape[0] // br, br, pad.shape[1] // bc, bc).amax(dim=(1, 3))
    s = (amax / E4M3_MAX).repeat_interleave(br, 0).repeat_interleave(bc, 1)[:rows, :cols]
    return U * x.abs() + SUB * s


def _gemm_bound(a, a_tiles, b, b_tiles) -> torch.Tensor:
    """Elementwise bound on |a' @ b' - a @ b| for a (M, K), b (K, N) quantized in their tiles."""
    da, db = _err_bound(a, a_tiles), _err_bound(b, b_tiles)
    fp32_acc = 1e-5 * (a.abs() @ b.abs())  # accumulation order, far below the FP8 terms
    return da @ b.abs() + a.abs() @ db + da @ db + fp32_acc


def _run(n_in: int, n_out: int, tokens: int, backend: str, cache_fp8: bool):
    lin = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_out, n_in) * _block_magnitudes(n_out, n_in, (TILE, TILE), 0))
    x_MK = torch.randn(tokens, n_in) * _block_magnitudes(tokens, n_in, (TILE, TILE), 2)
    dy_MN = torch.randn(tokens, n_out)
    layer = FP8Linear(
        lin,
        _ops(backend),
        backend=backend,
        scale_fmt=None,
        cache_fp8=cache_fp8,
        stats=QuantStats(),
        stats_every=0,
    )
    x = x_MK.clone().requires_grad_()
    layer(x).backward(dy_MN)
    x_ref = x_MK.clone().requires_grad_()
    lin.weight.grad, fp8_dw = None, lin.weight.grad.clone()
    F.linear(x_ref, lin.weight).backward(dy_MN)
    return x_MK, dy_MN, lin.weight.detach(), (x.grad, x_ref.grad), (fp8_dw, lin.weight.grad)


@pytest.mark.parametrize("n_in,n_out,tokens", [(256, 384, 200), (384, 256, 136), (130, 300, 64)])
def test_dgrad_within_fp8_bound_of_fp32_autograd(n_in, n_out, tokens):
    _, dy_MN, w_NK, (dx, dx_ref), _ = _run(n_in, n_out, tokens, "emulation", cache_fp8=True)
    # dx = dy W: dy in 1x128 tiles along N, W in 128x128 blocks
    bound = _gemm_bound(dy_MN, (1, TILE), w_NK, (TILE, TILE))
    assert ((dx - dx_ref).abs() <= bound).all()
    assert _rel(dx, dx_ref) < REL_MAX


@pytest.mark.parametrize("n_in,n_out,tokens", [(256, 384, 200), (384, 256, 136)])
def test_wgrad_within_fp8_bound_of_fp32_autograd(n_in, n_out, tokens):
    x_MK, dy_MN, _, _, (dw, dw_ref) = _run(n_in, n_out, tokens, "emulation", cache_fp8=False)
    # dW = dy^T x: both in 128x1 tiles over tokens (1x128 rows of dy^T and x^T)
    bound = _gemm_bound(dy_MN.t(), (1, TILE), x_MK, (TILE, 1))
    assert ((dw - dw_ref).abs() <= bound).all()
    assert _rel(dw, dw_ref) < REL_MAX
    # the V3 recipe re-tiles x from its 1x128 FP8 copy: one more rounding of x; its error
    # still adds in quadrature, staying within the bound of one FP8 GEMM
    dw_cached, dw_ref = _run(n_in, n_out, tokens, "emulation", cache_fp8=True)[4]
    assert _rel(dw_cached, dw_ref) < REL_MAX


def test_triton_dgrad_and_wgrad_on_a_non_square_grid():
    _, dy_MN, w_NK, (dx, dx_ref), (dw, dw_ref) = _run(256, 384, 136, "triton", cache_fp8=True)
    assert ((dx - dx_ref).abs() <= _gemm_bound(dy_MN, (1, TILE), w_NK, (TILE, TILE))).all()
    assert _rel(dx, dx_ref) < REL_MAX and _rel(dw, dw_ref) < REL_MAX
