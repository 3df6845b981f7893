"""The FP8 training recipe as data (DeepSeek-V3 §3.3): tile granularity, scale format and amax
floor per tensor role, and accumulation; each quantizer returns its operand in the layout the
block-scaled GEMM reads, so every variant runs through the same GEMM kernels.

Roles: act (Fprop input, cached for Wgrad), weight, grad (output gradient). Granularities:
  block:      act/grad 1x128 tiles, weight 128x128 blocks, Wgrad operands 128x1 tiles (V3);
  per_token:  act/grad one scale per row (token), weight per output channel (Dgrad re-quantizes
              W per input channel from the master weight), Wgrad operands per channel;
  per_tensor: one scale per tensor (W's transposes exactly).
Coarse scales are repeated along the inner dim to the GEMM's per-128 layout (exact).
Shapes: N tokens, I input features, O output features; Ib = ceil(I/128) scale blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

TILE = 128  # DeepSeek-V3 tile length (kernels.fp8_ref.TILE; kernels are imported lazily)
ACT_AMAX_MIN = 1e-4  # kernels.fp8_ref.AMAX_MIN: DeepSeek's inference activation floor
GRAD_AMAX_MIN = 1e-12  # kernels.fp8_ref.GRAD_AMAX_MIN: training gradient floor (see there)
GRANULARITIES = ("block", "per_token", "per_tensor")
ACCUMS = ("ideal", "limited")


@dataclass(frozen=True)
class Ops:
    """One backend's quantizers and GEMM (Triton kernels or their PyTorch references)."""

    act_quant: Callable  # 1x128 tiles along the last dim
    act_quant_t: Callable  # 128x1 tiles, returned transposed
    weight_quant: Callable  # 128x128 blocks
    gemm: Callable  # C = A B^T, per-K-block scales, fp32 accumulation
    dequant: Callable  # q * s over tiles (pure torch on both backends)


def make_ops(backend: str) -> Ops:
    """`triton` kernels or the `emulation` references (same tiles, scales and rounding)."""
    # Imported here: Triton decides interpreted vs compiled when it is first imported, and
    # merely registering a component must not make that choice for the process.
    from kernels import fp8_gemm, fp8_quant

    if backend == "triton":
        return Ops(
            fp8_quant.act_quant,
            fp8_quant.act_quant_t,
            fp8_quant.weight_quant,
            fp8_gemm.fp8_gemm,
            fp8_quant.dequant_ref,
        )
    return Ops(
        fp8_quant.act_quant_ref,
        fp8_quant.act_quant_t_ref,
        fp8_quant.weight_quant_ref,
        fp8_gemm.fp8_gemm_ref,
        fp8_quant.dequant_ref,
    )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _coarse(x: torch.Tensor, tile: tuple[int, int], fmt, floor, rows: int, cols: int):
    """x in `tile`-sized tiles (pure torch on both backends), scales repeated to (rows, cols)."""
    from kernels.fp8_ref import quant_tiles_ref

    q, s = quant_tiles_ref(x, tile, fmt, floor)
    return q, s.expand(rows if s.shape[0] == 1 else s.shape[0], cols).contiguous()


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How one FP8 layer quantizes each operand and accumulates; fmt None = fp32 scales."""

    ops: Ops
    granularity: str = "block"
    act_fmt: str | None = None  # Fprop input and its cached copy (ue8m0: lossless re-tiling)
    weight_fmt: str | None = None
    grad_fmt: str | None = None
    act_amax_min: float = ACT_AMAX_MIN
    grad_amax_min: float = GRAD_AMAX_MIN
    accum: str = "ideal"  # ideal: fp32 over all of K; limited: kernels.fp8_accum emulation
    accum_mantissa_bits: int = 13
    promote_every: int = TILE  # N_C; 0 = never promote (limited only)

    def _rows(self, x_NI: torch.Tensor, fmt, floor):
        """1x128 tiles (block), per row, or per tensor; scales (N, Ib)."""
        m, k = x_NI.shape  # rows, inner dim
        if self.granularity == "block":
            return self.ops.act_quant(x_NI, fmt, floor)
        tile = (1, k) if self.granularity == "per_token" else (m, k)
        return _coarse(x_NI, tile, fmt, floor, m, _cdiv(k, TILE))

    def act(self, x_NI: torch.Tensor):
        """Fprop input: q (N, I), s (N, Ib)."""
        return self._rows(x_NI, self.act_fmt, self.act_amax_min)

    def grad(self, dy_NO: torch.Tensor):
        """Dgrad output gradient along O: q (N, O), s (N, Ob)."""
        return self._rows(dy_NO, self.grad_fmt, self.grad_amax_min)

    def _cols_t(self, x_NI: torch.Tensor, fmt, floor):
        """Wgrad operand: x^T tiled along tokens, q (I, N), s (I, Nb)."""
        m, k = x_NI.shape  # tokens, features
        if self.granularity == "block":
            return self.ops.act_quant_t(x_NI, fmt, floor)
        tile = (m, 1) if self.granularity == "per_token" else (m, k)
        q, s = _coarse(x_NI, tile, fmt, floor, 1, k)
        return q.t().contiguous(), s.t().expand(k, _cdiv(m, TILE)).contiguous()

    def act_t(self, x_NI: torch.Tensor):
        return self._cols_t(x_NI, self.act_fmt, self.act_amax_min)

    def grad_t(self, dy_NO: torch.Tensor):
        return self._cols_t(dy_NO, self.grad_fmt, self.grad_amax_min)

    def weight(self, w_OI: torch.Tensor):
        """Fprop weight: q (O, I), s (ceil(O/b_block), Ib), b_block."""
        n, k = w_OI.shape  # out, in
        if self.granularity == "block":
            return (*self.ops.weight_quant(w_OI, self.weight_fmt), TILE)
        if self.granularity == "per_token":  # per output channel
            return (*_coarse(w_OI, (1, k), self.weight_fmt, ACT_AMAX_MIN, n, _cdiv(k, TILE)), 1)
        q, s = _coarse(w_OI, (n, k), self.weight_fmt, ACT_AMAX_MIN, 1, 1)
        return q, s.expand(_cdiv(n, TILE), _cdiv(k, TILE)).contiguous(), TILE

    def weight_t(self, w_OI: torch.Tensor, q_OI: torch.Tensor, s: torch.Tensor):
        """Dgrad weight W^T: q (I, O), s (ceil(I/b_block), Ob), b_block."""
        n, k = w_OI.shape  # out, in
        if self.granularity == "per_token":  # per input channel, from the master weight
            w_IO = w_OI.detach().t().contiguous()
            return (*_coarse(w_IO, (1, n), self.weight_fmt, ACT_AMAX_MIN, k, _cdiv(n, TILE)), 1)
        if self.granularity == "per_tensor":
            s_t = s[:1, :1].expand(_cdiv(k, TILE), _cdiv(n, TILE)).contiguous()
            return q_OI.t().contiguous(), s_t, TILE
        return q_OI.t().contiguous(), s.t().contiguous(), TILE  # 128x128 blocks transpose

    def gemm(self, a, a_s, b, b_s, b_block: int, out_dtype: torch.dtype) -> torch.Tensor:
        """C = A B^T with ideal fp32 accumulation, or the limited-precision emulation."""
        if self.accum == "ideal":
            return self.ops.gemm(a, a_s, b, b_s, b_block, out_dtype)
        from kernels.fp8_accum import fp8_gemm_limited_ref

        return fp8_gemm_limited_ref(
            a,
            a_s,
            b,
            b_s,
            b_block,
            out_dtype,
            mantissa_bits=self.accum_mantissa_bits,
            promote_every=self.promote_every,
        )

    def dequant(self, q: torch.Tensor, s: torch.Tensor, b_block: int = 1) -> torch.Tensor:
        """Any operand above back to fp32 (its scales are in the GEMM's per-128 layout)."""
        return self.ops.dequant(q, s, (b_block, TILE))


class QuantStats:
    """Running quantization-error statistics shared by the FP8 layers of one model."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.maxes: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add_error(self, key: str, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """Relative Frobenius error of one quantized tensor, and its flushed-to-zero fraction."""
        x = x.float()
        norm = x.norm().item()
        if norm > 0:
            self._add(f"{key}_rel_err", (x - x_hat).norm().item() / norm)
        nonzero = x != 0
        self._add(
            f"{key}_underflow", ((x_hat == 0) & nonzero).sum().item() / max(1, nonzero.sum().item())
        )

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.maxes[key] = max(self.maxes.get(key, value), value)
        self.counts[key] = self.counts.get(key, 0) + 1

    def summary(self) -> dict[str, float]:
        out = {}
        for key in sorted(self.sums):
            out[f"{key}_mean"] = self.sums[key] / self.counts[key]
            out[f"{key}_max"] = self.maxes[key]
        return out


class RecordsStats:
    """Mixin of the FP8 modules: record errors on every `stats_every`-th training forward."""

    stats: QuantStats
    stats_every: int
    num_calls: int

    def should_record(self) -> bool:
        if not (self.training and self.stats_every):
            return False
        self.num_calls += 1
        return (self.num_calls - 1) % self.stats_every == 0
