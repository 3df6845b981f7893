"""Limited-precision accumulation of an FP8 GEMM, emulated in PyTorch (DeepSeek-V3 §3.3.2).

H800 FP8 tensor cores keep only about 14 significant bits of the running sum; V3's fix copies
the partial sum to an FP32 register on the CUDA cores every N_C = 128 elements of K, applying
both scales there ("promotion"). This emulates the two regimes on any device:

  for each chunk of CHUNK = 32 elements of K (the K of one FP8 WGMMA), in order:
      lim = chop(lim + (A_chunk B_chunk^T) * a_s * b_s, bits)   # tensor-core accumulator
      at every `promote_every` elements: acc += lim; lim = 0      # FP32 promotion
  C = acc + lim

A chunk's own dot products are exact in fp32 (products of E4M3 values have 8 significant bits).
`chop` keeps `bits` explicit mantissa bits of fp32's 23 and rounds toward zero, as tensor-core
accumulators are reported to truncate; bits = 13 gives V3's "about 14 bits" (the leading bit
is implicit). The scale of each chunk's 128-wide K-block is applied before the limited add,
which is what makes `promote_every = 0` (never promote) computable at all; with power-of-two
scales the order does not matter. Shapes as in kernels/fp8_gemm.py.
"""

from __future__ import annotations

import torch

from kernels.fp8_quant import FP8, TILE

CHUNK = 32  # K elements of one H800 FP8 WGMMA instruction (N_C = 128 = 4 WGMMAs)
FP32_MANTISSA_BITS = 23


def chop_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """fp32 x with all but its `bits` leading explicit mantissa bits zeroed (round toward 0)."""
    if not 0 <= bits <= FP32_MANTISSA_BITS:
        raise ValueError(f"bits must be in [0, {FP32_MANTISSA_BITS}], got {bits}")
    if bits == FP32_MANTISSA_BITS:
        return x
    mask = -(1 << (FP32_MANTISSA_BITS - bits))  # int32 with the low 23 - bits bits clear
    return (x.float().contiguous().view(torch.int32) & mask).view(torch.float32)


def _expand_rows(b_s: torch.Tensor, b_block: int, n: int) -> torch.Tensor:
    return b_s.repeat_interleave(b_block, dim=0)[:n] if b_block > 1 else b_s


def fp8_gemm_limited_ref(
    a: torch.Tensor,
    a_s: torch.Tensor,
    b: torch.Tensor,
    b_s: torch.Tensor,
    b_block: int = TILE,
    out_dtype: torch.dtype = torch.bfloat16,
    *,
    mantissa_bits: int = 13,
    promote_every: int = TILE,
) -> torch.Tensor:
    """C = (A * a_s) (B * b_s)^T accumulated as above; arguments as `fp8_gemm`.

    Args:
        mantissa_bits: explicit mantissa bits the tensor-core accumulator keeps.
        promote_every: N_C, K elements between promotions to fp32 (a multiple of 32);
            0 never promotes (the whole K sum stays in the limited accumulator).
    """
    if a.dtype != FP8 or b.dtype != FP8:
        raise ValueError(f"a and b must be float8_e4m3fn, got {a.dtype} and {b.dtype}")
    if promote_every < 0 or promote_every % CHUNK:
        raise ValueError(f"promote_every must be 0 or a multiple of {CHUNK}, got {promote_every}")
    (m, k), n = a.shape, b.shape[0]
    a_f, b_f = a.float(), b.float()
    b_rows = _expand_rows(b_s, b_block, n)  # (N, ceil(K/128))
    acc = torch.zeros(m, n, dtype=torch.float32, device=a.device)
    lim = torch.zeros_like(acc)
    for k0 in range(0, k, CHUNK):
        kb = k0 // TILE
        part = a_f[:, k0 : k0 + CHUNK] @ b_f[:, k0 : k0 + CHUNK].t()
        lim = chop_mantissa(lim + part * a_s[:, kb, None] * b_rows[None, :, kb], mantissa_bits)
        if promote_every and (k0 + CHUNK) % promote_every == 0:
            acc, lim = acc + lim, torch.zeros_like(lim)
    return (acc + lim).to(out_dtype)
