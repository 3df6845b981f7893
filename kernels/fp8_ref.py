"""E4M3 tile-quantization format and its pure-PyTorch reference (DeepSeek-V3 §3.3).

The constants and checks the Triton quantizer (`kernels.fp8_quant`) and its references share,
and the references themselves: `quant_tiles_ref` for tiles of any shape, the 1x128 activation,
128x1 transposed and 128x128 weight forms, and `dequant_ref`. No Triton import: the FP8
recipe's CPU emulation runs on these alone.
"""

from __future__ import annotations

import torch

FP8_E4M3_MAX = 448.0  # largest finite float8_e4m3fn value
AMAX_MIN = 1e-4  # amax floor: an all-zero tile gets s = AMAX_MIN / 448, never 0 or NaN
# Gradient floor: far below any real gradient tile (small models: 1e-6..1e-5, and a loss scaled
# by 1e-3 moves them to 1e-9..1e-8), so no scale is pinned and underflow does not depend on the
# loss normalisation; s = 1e-12 / 448 is still a normal fp32 number, so ue8m0 rounding on the bits
# stays exact (the fp32 min normal itself would give a subnormal s).
GRAD_AMAX_MIN = 1e-12
AMAX_MIN_LOWEST = FP8_E4M3_MAX * 2.0**-126  # smallest floor whose scale is a normal fp32
TILE = 128  # tile length along the scaled dimension
FP8 = torch.float8_e4m3fn
SCALE_FMTS = (None, "ue8m0")


def check_fmt(scale_fmt: str | None) -> bool:
    """True for power-of-two (ue8m0) scales; ValueError for an unknown format."""
    if scale_fmt not in SCALE_FMTS:
        raise ValueError(f"scale_fmt must be one of {SCALE_FMTS}, got {scale_fmt!r}")
    return scale_fmt == "ue8m0"


def check_floor(amax_min: float) -> float:
    """`amax_min` as a float; ValueError outside [AMAX_MIN_LOWEST, 448]."""
    if not AMAX_MIN_LOWEST <= amax_min <= FP8_E4M3_MAX:
        raise ValueError(f"amax_min must be in [{AMAX_MIN_LOWEST:.3g}, 448], got {amax_min}")
    return float(amax_min)


def _pow2_ceil(s: torch.Tensor) -> torch.Tensor:
    """2^ceil(log2 s) for positive normal fp32 s, computed on the bits (exact)."""
    bits = s.view(torch.int32)
    up = ((bits >> 23) + ((bits & 0x7FFFFF) != 0).to(torch.int32)) << 23
    return up.view(torch.float32)


def quant_tiles_ref(
    x: torch.Tensor,
    block: tuple[int, int],
    scale_fmt: str | None = None,
    amax_min: float = AMAX_MIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a 2-D tensor in (br, bc) tiles of any size (a tile as wide as a dim is per row
    or per column, one as large as the tensor is per tensor); zero padding never changes an amax.

    Returns:
        q (R, C) float8_e4m3fn and s (ceil(R/br), ceil(C/bc)) float32.
    """
    pow2 = check_fmt(scale_fmt)
    amax_min = check_floor(amax_min)
    (rows, cols), (br, bc) = x.shape, block
    nr, nc = -(-rows // br), -(-cols // bc)
    if rows % br or cols % bc:
        xp = torch.zeros(nr * br, nc * bc, dtype=torch.float32, device=x.device)
        xp[:rows, :cols] = x
    else:  # no padding needed: tile a view (the emulation's hot path)
        xp = x.float()
    tiles = xp.reshape(nr, br, nc, bc)
    s = tiles.abs().amax(dim=(1, 3)).clamp_min(amax_min) / FP8_E4M3_MAX  # (nr, nc)
    if pow2:
        s = _pow2_ceil(s)
    q = (tiles / s[:, None, :, None]).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(FP8)
    return q.view(nr * br, nc * bc)[:rows, :cols].contiguous(), s


def act_quant_ref(x: torch.Tensor, scale_fmt: str | None = None, amax_min: float = AMAX_MIN):
    """PyTorch reference of `act_quant` (1x128 tiles along the last dim)."""
    q, s = quant_tiles_ref(x.reshape(-1, x.shape[-1]), (1, TILE), scale_fmt, amax_min)
    return q.view(x.shape), s.view(*x.shape[:-1], -1)


def act_quant_t_ref(x: torch.Tensor, scale_fmt: str | None = None, amax_min: float = AMAX_MIN):
    """PyTorch reference of `act_quant_t` (128x1 tiles of x, returned as x^T in 1x128)."""
    # tile in place: no strided reductions
    q, s = quant_tiles_ref(x, (TILE, 1), scale_fmt, amax_min)
    return q.t().contiguous(), s.t().contiguous()


def weight_quant_ref(w: torch.Tensor, scale_fmt: str | None = None, amax_min: float = AMAX_MIN):
    """PyTorch reference of `weight_quant` (128x128 blocks)."""
    return quant_tiles_ref(w, (TILE, TILE), scale_fmt, amax_min)


def dequant_ref(q: torch.Tensor, s: torch.Tensor, block: tuple[int, int] = (1, TILE)):
    """x ~= q * s with s broadcast over (br, bc) tiles of the last two dims; fp32 out.

    `block` is (1, 128) for activation tiles and (128, 128) for weight blocks. Pure torch,
    exact, so the FP8 linear also uses it on GPUs to re-tile cached activations.
    """
    if q.dim() == 1:
        return dequant_ref(q[None], s[None], block)[0]
    br, bc = block
    rows, cols = q.shape[-2:]
    if cols % bc == 0 and rows % br == 0:  # broadcast over a tiled view, no expanded scales
        lead = q.shape[:-2]
        tiles = q.float().reshape(*lead, rows // br, br, cols // bc, bc)
        return (tiles * s[..., :, None, :, None]).reshape(q.shape)
    full = s.repeat_interleave(bc, dim=-1)[..., :cols]
    if br > 1:
        full = full.repeat_interleave(br, dim=-2)[..., :rows, :]
    return q.float() * full
