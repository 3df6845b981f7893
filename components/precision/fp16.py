"""FP16 mixed precision with dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision
Training", arXiv 1710.03740 §3.2): the forward under torch.autocast(float16) with fp32 master
weights, the loss multiplied by a scale S before the backward so that small gradients survive
fp16's range, the gradients divided by S before clipping.

Dynamic scaling as in torch.amp.GradScaler: a step whose gradients hold an inf or nan is
skipped (no optimizer step) and S is multiplied by `backoff_factor`; after `growth_interval`
steps in a row without one, S is multiplied by `growth_factor`. The scale, the steps skipped
and the growth counter are checkpointed, so a resumed run continues bit-identically.

Backends: `autocast` runs autocast's eligible ops (matmuls, attention) in real float16, as
`bf16` runs them in bfloat16; `emulation` (the CPU default: torch's fp16 matmul there is ~10x
slower than fp32) rounds the operands and results of every swapped Linear's three GEMMs to
float16 with fp32 sums (`ablate.nn.fp16_emulation`), and runs everything else in fp32,
attention core included.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ablate.nn.fp16_emulation import emulate_fp16
from ablate.nn.mixed_precision import (
    AutocastConfig,
    AutocastPrecision,
    keep_high_precision,
    weight_bytes_per_param,
)
from ablate.registry import register


@register("precision", "fp16")
class FP16(AutocastPrecision):
    compute_dtype = torch.float16

    @dataclass(frozen=True, kw_only=True)
    class Config(AutocastConfig):
        moment_dtype: Literal["float32", "bfloat16"] = "float32"  # AdamW m and v storage
        initial_scale: float = 65536.0  # S at step 1 (2^16, GradScaler's default)
        growth_factor: float = 2.0  # S *= this after growth_interval clean steps
        backoff_factor: float = 0.5  # S *= this on an overflow (the step is skipped)
        growth_interval: int = 2000  # consecutive steps without overflow before S grows
        # fnmatch patterns on dotted names of nn.Linears computed in fp32 (autocast off), e.g.
        # ("head", "*.head", "*gate*"); none by default: the same ops as `bf16` in 16 bits
        skip: tuple[str, ...] = ()
        # auto: autocast on CUDA, emulation elsewhere (see the module docstring)
        backend: Literal["auto", "autocast", "emulation"] = "auto"

        def check(self, root) -> None:
            key = "train.precision"
            if not self.initial_scale > 0:
                raise ValueError(f"{key}.initial_scale={self.initial_scale}: must be > 0")
            if not self.growth_factor >= 1:
                raise ValueError(f"{key}.growth_factor={self.growth_factor}: must be >= 1")
            if not 0 < self.backoff_factor < 1:
                raise ValueError(f"{key}.backoff_factor={self.backoff_factor}: must be in (0, 1)")
            if self.growth_interval < 1:
                raise ValueError(f"{key}.growth_interval={self.growth_interval}: must be >= 1")
            if any(not p for p in self.skip):
                raise ValueError(f"{key}.skip patterns must be non-empty strings")

    def __init__(self, cfg: Config, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.scale = float(cfg.initial_scale)
        self.growth_tracker = 0  # clean steps since the last growth or backoff
        self.num_skipped = 0  # optimizer steps skipped on overflow
        self.kept: list[str] = []
        auto = "autocast" if device.type == "cuda" else "emulation"
        self.backend = auto if cfg.backend == "auto" else cfg.backend

    def apply(self, model: nn.Module) -> nn.Module:
        super().apply(model)
        if self.backend == "autocast":
            self.kept = keep_high_precision(model, self.cfg.skip)
            self.count_bytes(model)  # kept Linears now read their fp32 weights
        else:
            self.kept, read = emulate_fp16(model, self.cfg.skip)  # kept: plain fp32 Linears
            self.bytes_per_param = weight_bytes_per_param(model, read)
        if self.cfg.skip and not self.kept:
            warnings.warn(
                f"fp16: no nn.Linear matches train.precision.skip {list(self.cfg.skip)}",
                stacklevel=2,
            )
        return model

    def autocast(self) -> contextlib.AbstractContextManager:
        return super().autocast() if self.backend == "autocast" else contextlib.nullcontext()

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale

    def unscale_grads(self, model: nn.Module) -> bool:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return False
        inv = 1.0 / self.scale
        amax = torch.stack([g.mul_(inv).abs().amax() for g in grads]).amax()
        return not bool(torch.isfinite(amax))  # an inf or nan anywhere (nan propagates)

    def update(self, overflow: bool) -> None:
        if overflow:
            self.scale *= self.cfg.backoff_factor
            self.growth_tracker = 0
            self.num_skipped += 1
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.cfg.growth_interval:
            self.scale *= self.cfg.growth_factor
            self.growth_tracker = 0

    def metrics(self) -> dict[str, float]:
        return {"loss_scale": self.scale, "num_skipped_steps": float(self.num_skipped)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "growth_tracker": self.growth_tracker,
            "num_skipped": self.num_skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.growth_tracker = int(state["growth_tracker"])
        self.num_skipped = int(state["num_skipped"])

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "backend": "torch_autocast" if self.backend == "autocast" else "emulation",
            "format": "float16",
            "loss_scale": self.scale,
            "num_skipped_steps": self.num_skipped,
            "kept_fp32": self.kept,
        }
