"""Fine-grained E4M3 quantization: 1x128 activation tiles, 128x128 weight blocks, and the
128x1 (transposed) tiles of the weight-gradient pass (DeepSeek-V3 §3.3, App. B).

One fp32 scale per tile, s = max(amax, amax_min) / FP8_E4M3_MAX (optionally rounded up to a
power of two, "ue8m0"), q = cast_e4m3(x / s), so x ~= q * s. The floor `amax_min` defaults to
AMAX_MIN, the activation floor of DeepSeek's inference quantizer; gradients in training pass
GRAD_AMAX_MIN, which only guards an all-zero tile.
Shapes (docs/design.md#shapes): x is 2-D, rows by columns (the last, contiguous dim):
activations (N, I), weights (O, I).

Triton-interpreter workaround: on CPU (`TRITON_INTERPRET=1`) Triton 3.x rounds fp32 -> fp8e4nv
without carrying a mantissa overflow into the exponent (31.6 becomes 16, not 32). The kernel
therefore rounds to E4M3 itself with integer ops on the fp32 bits (round-to-nearest-even, as
torch.float8_e4m3fn does) and stores the bits through a uint8 view of the fp8 output. The same
code runs compiled on a GPU, so the CPU tests exercise the GPU's code path bit for bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.fp8_ref import (  # noqa: F401  (re-exported: the format and references)
    AMAX_MIN,
    AMAX_MIN_LOWEST,
    FP8,
    FP8_E4M3_MAX,
    GRAD_AMAX_MIN,
    SCALE_FMTS,
    TILE,
    act_quant_ref,
    act_quant_t_ref,
    check_floor,
    check_fmt,
    dequant_ref,
    quant_tiles_ref,
    weight_quant_ref,
)

_MODE_ROW, _MODE_COL_T, _MODE_BLOCK = 0, 1, 2  # 1x128 tiles, 128x1 transposed, 128x128 blocks
_ROWS_PER_PROGRAM = 32  # rows of 1x128 tiles handled by one program
_COLS_PER_PROGRAM = 64  # columns of 128x1 tiles handled by one program


@triton.jit
def _quant_kernel(
    x_ptr,
    q_ptr,
    s_ptr,
    R,
    C,
    num_s_cols,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
    MODE: tl.constexpr,
    POW2: tl.constexpr,
    FP8_MAX: tl.constexpr,
    AMAX_FLOOR: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows[:, None] < R) & (cols[None, :] < C)
    x = tl.load(x_ptr + rows[:, None] * C + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    ax = tl.abs(x)
    if MODE == 0:  # one scale per row of the tile (1 x BLOCK_C)
        amax = tl.max(ax, axis=1)[:, None]
    elif MODE == 1:  # one scale per column of the tile (BLOCK_R x 1)
        amax = tl.max(ax, axis=0)[None, :]
    else:  # one scale for the whole tile
        amax = tl.max(tl.max(ax, axis=1), axis=0)
    # IEEE division (div_rn): `/` may lower to an approximate divide on GPUs.
    s = tl.math.div_rn(tl.maximum(amax, AMAX_FLOOR), FP8_MAX)
    if POW2:  # round s up to 2^ceil(log2 s) on the bits: exact, no log2 approximation
        sb = s.to(tl.int32, bitcast=True)
        sb = ((sb >> 23) + ((sb & 0x7FFFFF) != 0).to(tl.int32)) << 23
        s = sb.to(tl.float32, bitcast=True)
    v = tl.minimum(tl.maximum(tl.math.div_rn(x, s), -FP8_MAX), FP8_MAX)
    # fp32 -> E4M3 bits, round to nearest even. fp32: 8-bit exponent (bias 127), 23-bit
    # mantissa; E4M3: 4-bit exponent (bias 7), 3-bit mantissa, subnormal step 2^-9.
    bits = v.to(tl.int32, bitcast=True)
    sign = (bits >> 24) & 0x80
    a = bits & 0x7FFFFFFF
    exp = a >> 23
    # normal range (|v| >= 2^-6, fp32 biased exponent >= 121): drop 20 mantissa bits with RNE;
    # a carry out of the mantissa correctly bumps the exponent.
    r = a + 0x7FFFF + ((a >> 20) & 1)
    normal = (((r >> 23) - 120) << 3) | ((r >> 20) & 7)
    # subnormal range: the E4M3 code is round(|v| * 2^9), an RNE right shift of the significand
    shift = tl.minimum(141 - exp, 30)  # >= 25 already flushes to 0
    sig = (a & 0x7FFFFF) | 0x800000
    quo = sig >> shift
    rem = sig & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    quo += ((rem > half) | ((rem == half) & ((quo & 1) == 1))).to(tl.int32)
    code = (tl.where(exp >= 121, normal, quo) | sign).to(tl.uint8)
    if MODE == 1:  # store transposed: q is (C, R), scales (C, ceil(R/128))
        tl.store(q_ptr + cols[None, :] * R + rows[:, None], code, mask=mask)
        s_vec = tl.reshape(s, (BLOCK_C,))
        tl.store(s_ptr + cols * num_s_cols + pid_r, s_vec, mask=cols < C)
    else:
        tl.store(q_ptr + rows[:, None] * C + cols[None, :], code, mask=mask)
        if MODE == 0:
            s_vec = tl.reshape(s, (BLOCK_R,))
            tl.store(s_ptr + rows * num_s_cols + pid_c, s_vec, mask=rows < R)
        else:
            tl.store(s_ptr + pid_r * num_s_cols + pid_c, s)


def _check_input(x: torch.Tensor, name: str, ndim: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"{name} must be float32, bfloat16 or float16, got {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if x.dim() == 0 or x.numel() == 0:
        raise ValueError(f"{name} must be non-empty with at least one dim, got {tuple(x.shape)}")
    if not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    check_device(x, name)


def check_device(x: torch.Tensor, name: str) -> None:
    """Triton runs on CUDA tensors, or on CPU tensors only in the interpreter."""
    if x.device.type == "cuda":
        return
    if x.device.type != "cpu" or not triton.knobs.runtime.interpret:
        raise ValueError(
            f"{name} is on {x.device}: the Triton kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 set before triton is first imported (CPU)"
        )


def _launch(
    x2: torch.Tensor,
    q: torch.Tensor,
    s: torch.Tensor,
    mode: int,
    block_r: int,
    block_c: int,
    pow2: bool,
    amax_min: float,
) -> None:
    rows, cols = x2.shape
    grid = (triton.cdiv(rows, block_r), triton.cdiv(cols, block_c))
    _quant_kernel[grid](
        x2,
        q.view(torch.uint8),
        s,
        rows,
        cols,
        s.shape[-1],
        BLOCK_R=block_r,
        BLOCK_C=block_c,
        MODE=mode,
        POW2=pow2,
        FP8_MAX=FP8_E4M3_MAX,
        AMAX_FLOOR=amax_min,
    )


def act_quant(
    x: torch.Tensor, scale_fmt: str | None = None, amax_min: float = AMAX_MIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """1x128 tiles along the last dim (a partial last tile is scaled over its own elements).

    Args:
        x: (*lead, K) float tensor, contiguous.
        scale_fmt: None for exact fp32 scales, "ue8m0" for power-of-two scales.
        amax_min: floor of each tile's amax (AMAX_MIN; GRAD_AMAX_MIN for gradients).

    Returns:
        q (*lead, K) float8_e4m3fn and s (*lead, ceil(K/128)) float32.
    """
    _check_input(x, "x")
    pow2 = check_fmt(scale_fmt)
    x2 = x.reshape(-1, x.shape[-1])
    q = torch.empty(x.shape, dtype=FP8, device=x.device)
    s = torch.empty(
        *x.shape[:-1], triton.cdiv(x.shape[-1], TILE), dtype=torch.float32, device=x.device
    )
    _launch(x2, q, s, _MODE_ROW, _ROWS_PER_PROGRAM, TILE, pow2, check_floor(amax_min))
    return q, s


def act_quant_t(
    x: torch.Tensor, scale_fmt: str | None = None, amax_min: float = AMAX_MIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """128x1 tiles of a (M, K) tensor (per column, per 128 rows), returned transposed.

    The weight-gradient GEMM contracts over tokens M, so it wants x^T with 1x128 tiles along
    M: that is exactly x in 128x1 tiles.

    Returns:
        q (K, M) float8_e4m3fn (= quantized x^T) and s (K, ceil(M/128)) float32.
    """
    _check_input(x, "x", ndim=2)
    pow2 = check_fmt(scale_fmt)
    rows, cols = x.shape
    q = torch.empty(cols, rows, dtype=FP8, device=x.device)
    s = torch.empty(cols, triton.cdiv(rows, TILE), dtype=torch.float32, device=x.device)
    _launch(x, q, s, _MODE_COL_T, TILE, _COLS_PER_PROGRAM, pow2, check_floor(amax_min))
    return q, s


def weight_quant(
    w: torch.Tensor, scale_fmt: str | None = None, amax_min: float = AMAX_MIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """128x128 blocks of a (N, K) weight; edge blocks are scaled over their own elements.

    Returns:
        q (N, K) float8_e4m3fn and s (ceil(N/128), ceil(K/128)) float32.
    """
    _check_input(w, "w", ndim=2)
    pow2 = check_fmt(scale_fmt)
    q = torch.empty(w.shape, dtype=FP8, device=w.device)
    s = torch.empty(
        triton.cdiv(w.shape[0], TILE),
        triton.cdiv(w.shape[1], TILE),
        dtype=torch.float32,
        device=w.device,
    )
    _launch(w, q, s, _MODE_BLOCK, TILE, TILE, pow2, check_floor(amax_min))
    return q, s
