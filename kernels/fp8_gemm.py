"""Block-scaled FP8 GEMM out = a b^T with the scales applied per 128-wide block of the inner
dim inside the accumulation loop, in fp32 (DeepSeek-V3 §3.3.2, "promote to FP32 every N_C = 128").

Shapes (docs/design.md#shapes): a (N, I) E4M3 with 1x128 scales a_s (N, ceil(I/128)); b (O, I)
E4M3 with scales b_s of (ceil(O/b_block), ceil(I/128)): b_block = 128 for 128x128 weight blocks
(fprop, dgrad) and b_block = 1 for 1x128 rows (wgrad, where both operands are the 128x1 tiles
of dY and X transposed); out (N, O). N, O and I need not be multiples of 128: loads are masked
with zeros. The kernel's M, N, K arguments and BLOCK_M/N/K tiles keep the BLAS names of the
GEMM's rows, columns and inner dim (here N, O and I).
FP8 operands are passed to the kernel as uint8 views and bitcast inside (see fp8_quant.py).
Interpreter workaround: Triton 3.x's CPU interpreter truncates fp32 -> bf16 instead of rounding
to nearest even (0.1260 -> 0.1250), so the kernel rounds to bf16 on the bits itself and
stores them through an int16 view; compiled GPU code runs the same instructions.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.fp8_quant import FP8, TILE, check_device, dequant_ref

OUT_DTYPES = (torch.bfloat16, torch.float32)
B_BLOCKS = (1, TILE)  # rows of B sharing one scale: 1x128 rows or 128x128 blocks
_INTERPRET_BLOCK = 64  # BLOCK_M = BLOCK_N in the CPU interpreter (fewer, larger programs)
_GPU_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
    for bm, bn, w, st in [
        (128, 128, 8, 3),
        (128, 128, 4, 4),
        (64, 128, 4, 4),
        (128, 64, 4, 4),
        (64, 64, 4, 4),
        (128, 256, 8, 3),
    ]
]


@triton.jit
def _gemm_kernel(
    a_ptr,
    a_s_ptr,
    b_ptr,
    b_s_ptr,
    c_ptr,
    M,
    N,
    K,
    num_kb,
    B_BLOCK: tl.constexpr,
    OUT_BF16: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, num_kb):
        k = kb * BLOCK_K + rk
        a = tl.load(
            a_ptr + rm[:, None] * K + k[None, :], mask=(rm[:, None] < M) & (k[None, :] < K), other=0
        )
        # B is read K-major as (BLOCK_K, BLOCK_N), the layout FP8 tensor-core MMAs want
        b = tl.load(
            b_ptr + rn[None, :] * K + k[:, None], mask=(rn[None, :] < N) & (k[:, None] < K), other=0
        )
        a_s = tl.load(a_s_ptr + rm * num_kb + kb, mask=rm < M, other=0.0)
        b_s = tl.load(b_s_ptr + (rn // B_BLOCK) * num_kb + kb, mask=rn < N, other=0.0)
        partial = tl.dot(a.to(tl.float8e4nv, bitcast=True), b.to(tl.float8e4nv, bitcast=True))
        acc += partial * a_s[:, None] * b_s[None, :]
    c_mask = (rm[:, None] < M) & (rn[None, :] < N)
    if OUT_BF16:  # fp32 -> bf16 round-to-nearest-even on the bits, stored via an int16 view
        bits = acc.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        tl.store(c_ptr + rm[:, None] * N + rn[None, :], bits.to(tl.int16), mask=c_mask)
    else:
        tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc, mask=c_mask)


_gemm_tuned = triton.autotune(configs=_GPU_CONFIGS, key=["M", "N", "K", "B_BLOCK", "OUT_BF16"])(
    _gemm_kernel
)


def _check_operand(q: torch.Tensor, s: torch.Tensor, name: str, scale_rows: int) -> None:
    if q.dtype != FP8:
        raise ValueError(f"{name} must be float8_e4m3fn, got {q.dtype}")
    if q.dim() != 2 or not q.is_contiguous():
        raise ValueError(f"{name} must be a contiguous 2-D tensor, got shape {tuple(q.shape)}")
    want = (scale_rows, triton.cdiv(q.shape[1], TILE))
    if s.dtype != torch.float32 or tuple(s.shape) != want or not s.is_contiguous():
        raise ValueError(
            f"{name}_s must be a contiguous float32 tensor of shape {want}, got "
            f"{s.dtype} {tuple(s.shape)}"
        )
    if s.device != q.device:
        raise ValueError(f"{name}_s is on {s.device} but {name} is on {q.device}")
    check_device(q, name)


def fp8_gemm(
    a: torch.Tensor,
    a_s: torch.Tensor,
    b: torch.Tensor,
    b_s: torch.Tensor,
    b_block: int = TILE,
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """out = (a * a_s) (b * b_s)^T with per-128-block scaling of I and fp32 accumulation.

    Args:
        a: (N, I) float8_e4m3fn; a_s: (N, ceil(I/128)) float32 (1x128 tiles).
        b: (O, I) float8_e4m3fn; b_s: (ceil(O/b_block), ceil(I/128)) float32.
        b_block: 128 for 128x128 weight blocks, 1 for 1x128 rows.
        out_dtype: torch.bfloat16 or torch.float32.

    Returns:
        (N, O) in `out_dtype`.
    """
    if b_block not in B_BLOCKS:
        raise ValueError(f"b_block must be one of {B_BLOCKS}, got {b_block}")
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"out_dtype must be one of {OUT_DTYPES}, got {out_dtype}")
    _check_operand(a, a_s, "a", a.shape[0] if a.dim() == 2 else -1)
    _check_operand(b, b_s, "b", triton.cdiv(b.shape[0], b_block) if b.dim() == 2 else -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"inner dims differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"a is on {a.device} but b is on {b.device}")
    (m, k), n = a.shape, b.shape[0]
    c = torch.empty(m, n, dtype=out_dtype, device=a.device)
    out_bf16 = out_dtype == torch.bfloat16
    c_view = c.view(torch.int16) if out_bf16 else c
    args = (a.view(torch.uint8), a_s, b.view(torch.uint8), b_s, c_view, m, n, k, a_s.shape[1])
    if a.device.type == "cuda":
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))
        _gemm_tuned[grid](*args, B_BLOCK=b_block, OUT_BF16=out_bf16, BLOCK_K=TILE)
    else:  # interpreter: no autotuning, one fixed tile size
        grid = (triton.cdiv(m, _INTERPRET_BLOCK), triton.cdiv(n, _INTERPRET_BLOCK))
        _gemm_kernel[grid](
            *args,
            B_BLOCK=b_block,
            OUT_BF16=out_bf16,
            BLOCK_M=_INTERPRET_BLOCK,
            BLOCK_N=_INTERPRET_BLOCK,
            BLOCK_K=TILE,
        )
    return c


def fp8_gemm_ref(
    a: torch.Tensor,
    a_s: torch.Tensor,
    b: torch.Tensor,
    b_s: torch.Tensor,
    b_block: int = TILE,
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """Reference: dequantize both operands, then one fp32 matmul (same math, other order)."""
    a_f = dequant_ref(a, a_s, (1, TILE))
    b_f = dequant_ref(b, b_s, (b_block, TILE))
    return (a_f @ b_f.t()).to(out_dtype)
