"""Fine-grained FP8 training: eligible nn.Linear layers run their three GEMMs in block-scaled
E4M3 (DeepSeek-V3, arXiv 2412.19437 §3.3, App. B); everything else runs as in `bf16`.

Fprop y = x W^T: x in 1x128 tiles x W in 128x128 blocks. Dgrad dx = dy W: dy in 1x128 tiles x
W in 128x128 blocks. Wgrad dW = dy^T x: both in 128x1 tiles (per channel, per 128 tokens).
Only nn.Linear modules are swapped (stacked MoE expert weights stay in bf16).
Shapes (docs/design.md#shapes): N tokens (batch x time), I input features, O output features.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ablate.interfaces import Router
from ablate.nn.mixed_precision import AutocastConfig, AutocastPrecision
from ablate.registry import register

TILE = 128  # DeepSeek-V3 tile length (kernels.fp8_quant.TILE; imported lazily, see _ops)
GEMM_DTYPES = (torch.bfloat16, torch.float32)


@dataclass(frozen=True)
class _Ops:
    """One backend's quantizers and GEMM (Triton kernels or their PyTorch references)."""

    act_quant: Callable  # 1x128 tiles along the last dim
    act_quant_t: Callable  # 128x1 tiles, returned transposed
    weight_quant: Callable  # 128x128 blocks
    gemm: Callable  # a b^T, scales per 128-wide block of the inner dim, fp32 accumulation
    dequant: Callable  # q * s over tiles (pure torch on both backends)


def _ops(backend: str) -> _Ops:
    # Imported here: Triton decides interpreted vs compiled when it is first imported, and
    # merely registering this component must not make that choice for the process.
    from kernels import fp8_gemm, fp8_quant

    if backend == "triton":
        return _Ops(
            fp8_quant.act_quant,
            fp8_quant.act_quant_t,
            fp8_quant.weight_quant,
            fp8_gemm.fp8_gemm,
            fp8_quant.dequant_ref,
        )
    return _Ops(
        fp8_quant.act_quant_ref,
        fp8_quant.act_quant_t_ref,
        fp8_quant.weight_quant_ref,
        fp8_gemm.fp8_gemm_ref,
        fp8_quant.dequant_ref,
    )


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


class _FP8LinearFn(torch.autograd.Function):
    """y = x W^T + b with FP8 fprop, dgrad and wgrad GEMMs."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        dev = x.device.type
        out_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        gemm_dtype = out_dtype if out_dtype in GEMM_DTYPES else torch.float32
        ops, fmt = layer.ops, layer.scale_fmt
        record = layer.should_record()
        with torch.autocast(dev, enabled=False):
            x_NI = x.reshape(-1, x.shape[-1]).contiguous()
            qx, sx = ops.act_quant(x_NI, fmt)
            qw, sw = ops.weight_quant(weight.detach().contiguous(), fmt)
            y_NO = ops.gemm(qx, sx, qw, sw, TILE, gemm_dtype)
            if bias is not None:
                y_NO = y_NO + bias.to(y_NO.dtype)
            if record:
                layer.stats.add_error("act", x_NI, ops.dequant(qx, sx))
                layer.stats.add_error("weight", weight, ops.dequant(qw, sw, (TILE, TILE)))
        # The Wgrad input is cached as 1x128 FP8 and re-tiled later (V3 §3.3.3), or kept as is.
        cached = (qx, sx) if layer.cache_fp8 else (x_NI,)
        ctx.save_for_backward(qw, sw, *cached)
        ctx.layer, ctx.record, ctx.has_bias = layer, record, bias is not None
        ctx.x_shape, ctx.x_dtype, ctx.gemm_dtype = x.shape, x.dtype, gemm_dtype
        return y_NO.to(out_dtype).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        layer = ctx.layer
        ops, fmt = layer.ops, layer.scale_fmt
        qw, sw, *cached = ctx.saved_tensors
        dx = dw = db = None
        with torch.autocast(dy.device.type, enabled=False):
            dy_NO = dy.reshape(-1, dy.shape[-1]).contiguous()
            if ctx.needs_input_grad[0]:
                # Dgrad: dy in 1x128 tiles along O x W^T; 128x128 block scales just transpose
                qdy, sdy = ops.act_quant(dy_NO, fmt)
                dx_NI = ops.gemm(
                    qdy, sdy, qw.t().contiguous(), sw.t().contiguous(), TILE, ctx.gemm_dtype
                )
                dx = dx_NI.to(ctx.x_dtype).view(ctx.x_shape)
                if ctx.record:
                    layer.stats.add_error("grad", dy_NO, ops.dequant(qdy, sdy))
            if ctx.needs_input_grad[1]:
                # Wgrad: contract over tokens with dy and x both in 128x1 tiles, fp32 out
                x_NI = ops.dequant(*cached) if layer.cache_fp8 else cached[0]
                qdy_t, sdy_t = ops.act_quant_t(dy_NO, fmt)
                qx_t, sx_t = ops.act_quant_t(x_NI.contiguous(), fmt)
                dw = ops.gemm(qdy_t, sdy_t, qx_t, sx_t, 1, torch.float32)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                db = dy_NO.float().sum(0)
        return dx, dw, db, None


class FP8Linear(nn.Linear):
    """An nn.Linear (same parameters and state-dict keys) computed with `_FP8LinearFn`."""

    def __init__(
        self,
        linear: nn.Linear,
        ops: _Ops,
        *,
        backend: str,
        scale_fmt: str | None,
        cache_fp8: bool,
        stats: QuantStats,
        stats_every: int,
    ) -> None:
        super().__init__(
            linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta"
        )
        self.weight, self.bias = linear.weight, linear.bias  # share, so ties survive
        self.ops, self.backend, self.scale_fmt, self.cache_fp8 = ops, backend, scale_fmt, cache_fp8
        self.stats, self.stats_every, self.num_calls = stats, stats_every, 0

    def should_record(self) -> bool:
        """Record quantization errors on every `stats_every`-th training forward."""
        if not (self.training and self.stats_every):
            return False
        self.num_calls += 1
        return (self.num_calls - 1) % self.stats_every == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FP8LinearFn.apply(x, self.weight, self.bias, self)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fp8_backend={self.backend}"


def skipped(name: str, parent: nn.Module, patterns: tuple[str, ...]) -> bool:
    """Linears kept in high precision: any inside a router, or a name matching a pattern."""
    return isinstance(parent, Router) or any(fnmatch.fnmatchcase(name, p) for p in patterns)


@register("precision", "fp8_block")
class FP8Block(AutocastPrecision):
    @dataclass(frozen=True, kw_only=True)
    class Config(AutocastConfig):
        moment_dtype: Literal["float32", "bfloat16"] = "bfloat16"  # AdamW m, v (V3 §3.3.3)
        # fnmatch patterns on dotted module names of Linears kept in bf16/fp32 (plus router
        # Linears always): embedding, output head, router gate, norms
        skip: tuple[str, ...] = ("*emb*", "head", "*.head", "*gate*", "*router*", "*norm*")
        backend: Literal["auto", "triton", "emulation"] = "auto"  # auto: triton on CUDA
        scale_fmt: Literal["fp32", "ue8m0"] = "fp32"  # ue8m0: power-of-two scales
        cache_fp8_activations: bool = True  # Wgrad reads x from its 1x128 FP8 copy (V3)
        stats_every: int = 50  # per layer: record quant errors every N training forwards

        def check(self, root) -> None:
            if self.stats_every < 0:
                raise ValueError("train.precision.stats_every must be >= 0")
            if any(not p for p in self.skip):
                raise ValueError("train.precision.skip patterns must be non-empty strings")

    def __init__(self, cfg: Config, device: torch.device) -> None:
        super().__init__(cfg, device)
        auto = "triton" if device.type == "cuda" else "emulation"
        self.backend = auto if cfg.backend == "auto" else cfg.backend
        self.stats = QuantStats()
        self.fp8_layers: list[str] = []
        self.skipped_layers: list[str] = []

    def apply(self, model: nn.Module) -> nn.Module:
        super().apply(model)
        if self.backend == "triton":
            from kernels.fp8_quant import check_device  # lazy, see _ops

            check_device(torch.empty(0, device=self.device), "train.precision.backend=triton")
        ops = _ops(self.backend)
        fmt = None if self.cfg.scale_fmt == "fp32" else self.cfg.scale_fmt
        for parent_name, parent in list(model.named_modules()):
            for child_name, child in list(parent.named_children()):
                name = f"{parent_name}.{child_name}" if parent_name else child_name
                if type(child) is not nn.Linear:
                    continue
                if skipped(name, parent, self.cfg.skip):
                    self.skipped_layers.append(name)
                    continue
                setattr(
                    parent,
                    child_name,
                    FP8Linear(
                        child,
                        ops,
                        backend=self.backend,
                        scale_fmt=fmt,
                        cache_fp8=self.cfg.cache_fp8_activations,
                        stats=self.stats,
                        stats_every=self.cfg.stats_every,
                    ),
                )
                self.fp8_layers.append(name)
        if self.skipped_layers or not self.fp8_layers:
            warnings.warn(
                f"fp8_block: {len(self.fp8_layers)} Linear layer(s) in FP8; kept in "
                f"higher precision (train.precision.skip): {self.skipped_layers}",
                stacklevel=2,
            )
        return model

    def summary(self) -> dict[str, Any]:
        backend = self.backend
        if backend == "triton" and self.device.type != "cuda":
            backend = "triton_interpreter"
        return {
            **super().summary(),
            "backend": backend,
            "format": "e4m3",
            "scale_fmt": self.cfg.scale_fmt,
            "tiles": {
                "fprop": "1x128 x 128x128",
                "dgrad": "1x128 x 128x128",
                "wgrad": "128x1 x 128x1",
            },
            "num_fp8_linears": len(self.fp8_layers),
            "skipped": self.skipped_layers,
            "quant_error": self.stats.summary(),
        }
