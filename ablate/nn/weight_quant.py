"""Weight-only post-training quantizers, pure functions over one weight matrix (O, I).

INT8 per output channel: scale_O = amax over the row / 127, q = round(w / scale) in
[-127, 127], one int8 per weight. INT4 group-wise: each row split into groups of `group_size`
along the input dim (the last group may be shorter), symmetric, scale_OL = amax over the group
/ 7, q in [-7, 7] (the code -8 is unused so the grid is symmetric), two codes packed per byte
along the row. Scales are fp32. Round to nearest gives |w - deq(q(w))| <= scale / 2 per element;
an all-zero row or group has scale 0 and dequantizes to exact zeros.
Shapes (docs/design.md#shapes): O output features, I input features, L quantization groups
along a row's input features, ceil(I / group_size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

INT8_QMAX = 127  # symmetric int8 grid [-127, 127]
INT4_QMAX = 7  # symmetric int4 grid [-7, 7]
INT4_GROUP = 128  # default group along the input dim
SCALE_BYTES = 4  # every scale is stored as fp32
BITS = {"int8": 8, "int4": 4}


@dataclass(frozen=True)
class Quantized:
    """A quantized weight: codes (int8 (O, I), or packed uint8 (O, ceil(I/2)) for int4) and
    fp32 scales (O,) per channel or (O, L) per group."""

    fmt: str
    codes: torch.Tensor
    scale: torch.Tensor
    shape: tuple[int, int]
    group_size: int = 0  # int4: input features per group

    def nbytes(self) -> int:
        """Bytes stored: codes plus scales."""
        return self.codes.numel() * self.codes.element_size() + self.scale.numel() * SCALE_BYTES


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """Divisor for q = w / scale: 1 where a row or group is all zero (its codes are then 0)."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_int8(w_OI: torch.Tensor) -> Quantized:
    """Symmetric per-output-channel INT8 of a 2-D weight."""
    if w_OI.dim() != 2:
        raise ValueError(f"quantize_int8: weight must be 2-D (O, I), got {tuple(w_OI.shape)}")
    w_OI = w_OI.detach().float()
    scale_O = w_OI.abs().amax(dim=1) / INT8_QMAX
    q_OI = torch.round(w_OI / _safe(scale_O)[:, None]).clamp(-INT8_QMAX, INT8_QMAX)
    return Quantized("int8", q_OI.to(torch.int8), scale_O, tuple(w_OI.shape))


def dequantize_int8(q: Quantized) -> torch.Tensor:
    """fp32 weight (O, I) from `quantize_int8`'s codes and scales."""
    return q.codes.float() * q.scale[:, None]


def quantize_int4(w_OI: torch.Tensor, group_size: int = INT4_GROUP) -> Quantized:
    """Symmetric group-wise INT4 of a 2-D weight, groups of `group_size` along the input dim."""
    if w_OI.dim() != 2:
        raise ValueError(f"quantize_int4: weight must be 2-D (O, I), got {tuple(w_OI.shape)}")
    if group_size < 1:
        raise ValueError(f"quantize_int4: group_size={group_size} must be >= 1")
    w_OI = w_OI.detach().float()
    num_out, num_in = w_OI.shape
    num_groups = math.ceil(num_in / group_size)
    pad = num_groups * group_size - num_in  # zeros: they leave every group's amax unchanged
    # (O, L, group_size): each row's groups side by side
    groups = torch.nn.functional.pad(w_OI, (0, pad)).view(num_out, num_groups, group_size)
    scale_OL = groups.abs().amax(dim=2) / INT4_QMAX
    q_groups = torch.round(groups / _safe(scale_OL)[..., None]).clamp(-INT4_QMAX, INT4_QMAX)
    q_OI = q_groups.view(num_out, -1)[:, :num_in].to(torch.int8)
    return Quantized("int4", pack_int4(q_OI), scale_OL, (num_out, num_in), group_size)


def pack_int4(q_OI: torch.Tensor) -> torch.Tensor:
    """Two's-complement 4-bit codes, two per byte along each row: uint8 (O, ceil(I/2)); the
    even column in the low nibble. An odd I pads each row with one zero code."""
    q_OI = torch.nn.functional.pad(q_OI, (0, q_OI.shape[1] % 2))
    nib = (q_OI & 0xF).to(torch.uint8)
    return nib[:, 0::2] | (nib[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor, num_in: int) -> torch.Tensor:
    """int8 codes (O, I) in [-8, 7] from `pack_int4`'s bytes."""
    lo, hi = (packed & 0xF).to(torch.int8), (packed >> 4).to(torch.int8)
    q = torch.stack([lo, hi], dim=2).view(packed.shape[0], -1)[:, :num_in]
    return torch.where(q > INT4_QMAX, q - 16, q)  # sign-extend the nibble


def dequantize_int4(q: Quantized) -> torch.Tensor:
    """fp32 weight (O, I) from `quantize_int4`'s packed codes and group scales."""
    num_out, num_in = q.shape
    scale_OI = q.scale.repeat_interleave(q.group_size, dim=1)[:, :num_in]
    return unpack_int4(q.codes, num_in).float() * scale_OI


def quantize(w_OI: torch.Tensor, fmt: str, group_size: int = INT4_GROUP) -> Quantized:
    """`quantize_int8` or `quantize_int4` by name."""
    if fmt == "int8":
        return quantize_int8(w_OI)
    if fmt == "int4":
        return quantize_int4(w_OI, group_size)
    raise ValueError(f"unknown weight format {fmt!r}: one of {sorted(BITS)}")


def dequantize(q: Quantized) -> torch.Tensor:
    """The fp32 weight a `Quantized` stands for."""
    return dequantize_int8(q) if q.fmt == "int8" else dequantize_int4(q)


def quantized_bytes(num_out: int, num_in: int, fmt: str, group_size: int = INT4_GROUP) -> int:
    """Closed form of `quantize(...).nbytes()` for an (O, I) weight."""
    if fmt == "int8":
        return num_out * num_in + num_out * SCALE_BYTES
    groups = math.ceil(num_in / group_size)
    return num_out * math.ceil(num_in / 2) + num_out * groups * SCALE_BYTES
