"""Fine-grained FP8 training: eligible nn.Linear layers and MoE expert GEMMs run their three
GEMMs in block-scaled E4M3 (DeepSeek-V3, arXiv 2412.19437 §3.3, App. B); everything else runs
as in `bf16`. Each part of the recipe is a config field, so a study can ablate one at a time.

Fprop y = x W^T: x in 1x128 tiles x W in 128x128 blocks. Dgrad dx = dy W: dy in 1x128 tiles x
W in 128x128 blocks. Wgrad dW = dy^T x: both in 128x1 tiles (per channel, per 128 tokens).
Swapped by type: nn.Linear -> FP8Linear, ablate.nn.grouped.GroupedLinear (the stacked routed
experts' grouped GEMMs) -> FP8GroupedLinear.
Shapes (docs/design.md#shapes): N tokens (batch x time), I input features, O output features.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ablate.interfaces import Router
from ablate.nn.eager import eager
from ablate.nn.fp8_grouped import FP8GroupedLinear, gemm_dtype_of
from ablate.nn.fp8_recipe import (
    GRAD_AMAX_MIN,
    Ops,
    QuantStats,
    Recipe,
    RecordsStats,
    make_ops,
)
from ablate.nn.grouped import GroupedLinear
from ablate.nn.mixed_precision import AutocastConfig, AutocastPrecision
from ablate.registry import register

_Ops, _ops = Ops, make_ops  # the names tests and benchmarks import
__all__ = ["FP8Block", "FP8Linear", "QuantStats", "_ops"]
TILES = {
    "block": ("1x128 x 128x128", "1x128 x 128x128", "128x1 x 128x1"),
    "per_token": ("row x out-channel", "row x in-channel", "channel x channel"),
    "per_tensor": ("tensor x tensor",) * 3,
}


class _FP8LinearFn(torch.autograd.Function):
    """y = x W^T + b with FP8 fprop, dgrad and wgrad GEMMs, quantized as `layer.recipe` says."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        out_dtype, gemm_dtype = gemm_dtype_of(x)
        r, record = layer.recipe, layer.should_record()
        with torch.autocast(x.device.type, enabled=False):
            x_NI = x.reshape(-1, x.shape[-1]).contiguous()
            qx, sx = r.act(x_NI)
            qw, sw, b_block = r.weight(weight.detach().contiguous())
            y_NO = r.gemm(qx, sx, qw, sw, b_block, gemm_dtype)
            if bias is not None:
                y_NO = y_NO + bias.to(y_NO.dtype)
            if record:
                layer.stats.add_error("act", x_NI, r.dequant(qx, sx))
                layer.stats.add_error("weight", weight, r.dequant(qw, sw, b_block))
        # The Wgrad input is cached as 1x128 FP8 and re-tiled later (V3 §3.3.3), or kept as is.
        cached = (qx, sx) if layer.cache_fp8 else (x_NI,)
        ctx.save_for_backward(weight, qw, sw, *cached)
        ctx.layer, ctx.record, ctx.has_bias = layer, record, bias is not None
        ctx.x_shape, ctx.x_dtype, ctx.gemm_dtype = x.shape, x.dtype, gemm_dtype
        return y_NO.to(out_dtype).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        layer = ctx.layer
        r = layer.recipe
        weight, qw, sw, *cached = ctx.saved_tensors
        dx = dw = db = None
        with torch.autocast(dy.device.type, enabled=False):
            dy_NO = dy.reshape(-1, dy.shape[-1]).contiguous()
            if ctx.needs_input_grad[0]:
                # Dgrad: dy tiled along O x W^T (128x128 block scales just transpose)
                qdy, sdy = r.grad(dy_NO)
                dx_NI = r.gemm(qdy, sdy, *r.weight_t(weight, qw, sw), ctx.gemm_dtype)
                dx = dx_NI.to(ctx.x_dtype).view(ctx.x_shape)
                if ctx.record:
                    layer.stats.add_error("grad", dy_NO, r.dequant(qdy, sdy))
            if ctx.needs_input_grad[1]:
                # Wgrad: contract over tokens with dy and x both in 128x1 tiles, fp32 out
                x_NI = r.dequant(*cached) if layer.cache_fp8 else cached[0]
                qdy_t, sdy_t = r.grad_t(dy_NO)
                qx_t, sx_t = r.act_t(x_NI.contiguous())
                dw = r.gemm(qdy_t, sdy_t, qx_t, sx_t, 1, torch.float32)
                if ctx.record:  # with a cached copy: the re-tiling error alone
                    layer.stats.add_error("wgrad_act", x_NI, r.dequant(qx_t, sx_t).t())
            if ctx.has_bias and ctx.needs_input_grad[2]:
                db = dy_NO.float().sum(0)
        return dx, dw, db, None


class FP8Linear(RecordsStats, nn.Linear):
    """An nn.Linear (same parameters and state-dict keys) computed with `_FP8LinearFn`."""

    def __init__(
        self,
        linear: nn.Linear,
        ops: Ops,
        *,
        backend: str,
        scale_fmt: str | None,
        cache_fp8: bool,
        stats: QuantStats,
        stats_every: int,
        recipe: Recipe | None = None,
    ) -> None:
        """`recipe` overrides `ops` and `scale_fmt` (which then apply to every operand)."""
        super().__init__(
            linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta"
        )
        self.weight, self.bias = linear.weight, linear.bias  # share, so ties survive
        fmts = {"act_fmt": scale_fmt, "weight_fmt": scale_fmt, "grad_fmt": scale_fmt}
        self.recipe = recipe or Recipe(ops=ops, **fmts)
        self.backend, self.cache_fp8 = backend, cache_fp8
        self.stats, self.stats_every, self.num_calls = stats, stats_every, 0

    # Eager under train.compile (a graph break): traced, this function's stats side effects
    # failed (MoE) or its quantization went non-finite (a dense model diverged at step 2).
    @eager
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FP8LinearFn.apply(x, self.weight, self.bias, self)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fp8_backend={self.backend}"


def skipped(name: str, parent: nn.Module, patterns: tuple[str, ...]) -> bool:
    """Linears kept in high precision: any inside a router, or a name matching a pattern."""
    return isinstance(parent, Router) or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _fprop_weight_bytes(recipe: Recipe, weight: torch.Tensor) -> int:
    """Bytes of a weight as the Fprop GEMM reads it: E4M3 codes plus fp32 scales."""
    q, s, _ = recipe.weight(weight.detach().contiguous())
    return q.numel() * q.element_size() + s.numel() * 4


@register("precision", "fp8_block")
class FP8Block(AutocastPrecision):
    @dataclass(frozen=True, kw_only=True)
    class Config(AutocastConfig):
        moment_dtype: Literal["float32", "bfloat16"] = "bfloat16"  # AdamW m, v (V3 §3.3.3)
        # fnmatch patterns on dotted module names of Linears and grouped expert GEMMs
        # (moe: *.w13_gemm, *.w2_gemm) kept in bf16/fp32, plus router Linears always:
        # embedding, output head, router gate, norms
        skip: tuple[str, ...] = ("*emb*", "head", "*.head", "*gate*", "*router*", "*norm*")
        backend: Literal["auto", "triton", "emulation"] = "auto"  # auto: triton on CUDA
        # block: 1x128 act/grad tiles, 128x128 weight blocks (V3); per_token: one scale per
        # token and per channel; per_tensor: one per tensor (coarse baselines)
        granularity: Literal["block", "per_token", "per_tensor"] = "block"
        scale_fmt: Literal["fp32", "ue8m0"] = "fp32"  # weights, gradients, uncached inputs
        # the Fprop input cached as FP8 and re-tiled 1x128 -> 128x1 for Wgrad: power-of-two
        # scales make the re-tiling lossless (V3 §3.3.3; docs/design.md#fp8)
        cached_scale_fmt: Literal["fp32", "ue8m0"] = "ue8m0"
        cache_fp8_activations: bool = True  # Wgrad reads x from its 1x128 FP8 copy (V3)
        # gradient amax floor: only guards all-zero tiles (activations keep DeepSeek's 1e-4)
        grad_amax_min: float = GRAD_AMAX_MIN
        accum: Literal["ideal", "limited"] = "ideal"  # limited: H800-like tensor-core sums
        accum_mantissa_bits: int = 13  # limited: mantissa bits kept (V3: about 14 bits)
        promote_every: int = 128  # limited: N_C, K elements per fp32 promotion; 0 = never
        stats_every: int = 50  # per layer: record quant errors every N training forwards

        def check(self, root) -> None:
            if self.stats_every < 0:
                raise ValueError("train.precision.stats_every must be >= 0")
            if any(not p for p in self.skip):
                raise ValueError("train.precision.skip patterns must be non-empty strings")
            if not 0 < self.grad_amax_min <= 1:
                raise ValueError("train.precision.grad_amax_min must be in (0, 1]")
            if not 0 <= self.accum_mantissa_bits <= 23:
                raise ValueError("train.precision.accum_mantissa_bits must be in [0, 23]")
            if self.promote_every < 0 or self.promote_every % 32:
                raise ValueError("train.precision.promote_every must be 0 or a multiple of 32")

    def __init__(self, cfg: Config, device: torch.device) -> None:
        super().__init__(cfg, device)
        auto = "triton" if device.type == "cuda" else "emulation"
        self.backend = auto if cfg.backend == "auto" else cfg.backend
        self.stats = QuantStats()
        self.fp8_layers: list[str] = []
        self.fp8_grouped: list[str] = []
        self.skipped_layers: list[str] = []

    def recipe(self) -> Recipe:
        """The config as the quantize / GEMM calls of every FP8 layer."""
        cfg = self.cfg

        def fmt(name: str) -> str | None:
            return None if name == "fp32" else name

        act_fmt = cfg.cached_scale_fmt if cfg.cache_fp8_activations else cfg.scale_fmt
        return Recipe(
            ops=_ops(self.backend),
            granularity=cfg.granularity,
            act_fmt=fmt(act_fmt),
            weight_fmt=fmt(cfg.scale_fmt),
            grad_fmt=fmt(cfg.scale_fmt),
            grad_amax_min=cfg.grad_amax_min,
            accum=cfg.accum,
            accum_mantissa_bits=cfg.accum_mantissa_bits,
            promote_every=cfg.promote_every,
        )

    def apply(self, model: nn.Module) -> nn.Module:
        super().apply(model)
        if self.backend == "triton":
            from kernels.fp8_quant import check_device  # lazy, see make_ops

            check_device(torch.empty(0, device=self.device), "train.precision.backend=triton")
        recipe, cfg = self.recipe(), self.cfg
        common = dict(
            backend=self.backend,
            cache_fp8=cfg.cache_fp8_activations,
            stats=self.stats,
            stats_every=cfg.stats_every,
        )
        read: dict[int, int] = {}  # FP8 weights: bytes of their Fprop codes and scales
        for parent_name, parent in list(model.named_modules()):
            for child_name, child in list(parent.named_children()):
                name = f"{parent_name}.{child_name}" if parent_name else child_name
                if type(child) not in (nn.Linear, GroupedLinear):
                    continue
                if skipped(name, parent, cfg.skip):
                    self.skipped_layers.append(name)
                elif type(child) is GroupedLinear:
                    setattr(parent, child_name, FP8GroupedLinear(recipe, **common))
                    self.fp8_grouped.append(name)
                else:
                    fp8 = FP8Linear(child, recipe.ops, scale_fmt=None, recipe=recipe, **common)
                    setattr(parent, child_name, fp8)
                    self.fp8_layers.append(name)
                    read[id(child.weight)] = _fprop_weight_bytes(recipe, child.weight)
        self.count_bytes(model, read)
        if self.skipped_layers or not self.fp8_layers:
            warnings.warn(
                f"fp8_block: {len(self.fp8_layers)} Linear layer(s) and {len(self.fp8_grouped)} "
                f"grouped expert GEMM(s) in FP8; kept in higher precision "
                f"(train.precision.skip): {self.skipped_layers}",
                stacklevel=2,
            )
        return model

    def summary(self) -> dict[str, Any]:
        backend, cfg = self.backend, self.cfg
        if backend == "triton" and self.device.type != "cuda":
            backend = "triton_interpreter"
        act_fmt = cfg.cached_scale_fmt if cfg.cache_fp8_activations else cfg.scale_fmt
        return {
            **super().summary(),
            "backend": backend,
            "format": "e4m3",
            "granularity": cfg.granularity,
            "scale_fmt": {"act": act_fmt, "weight": cfg.scale_fmt, "grad": cfg.scale_fmt},
            "tiles": dict(zip(("fprop", "dgrad", "wgrad"), TILES[cfg.granularity], strict=True)),
            "accum": cfg.accum
            if cfg.accum == "ideal"
            else f"limited: {cfg.accum_mantissa_bits} bits, promote every {cfg.promote_every}",
            "num_fp8_linears": len(self.fp8_layers),
            "num_fp8_grouped": len(self.fp8_grouped),
            "skipped": self.skipped_layers,
            "quant_error": self.stats.summary(),
        }
