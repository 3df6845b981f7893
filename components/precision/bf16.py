"""BF16 mixed precision: forward under torch.autocast(bfloat16) with fp32 master weights
(Micikevicius et al. 2018, "Mixed Precision Training"; bf16 needs no loss scaling).

Parameters and gradients stay fp32; AdamW moments are fp32 unless `moment_dtype` says bf16
(the DeepSeek-V3 §3.3.3 setting, which `fp8_block` uses by default).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ablate.interfaces import Precision
from ablate.optim import MOMENT_DTYPES, AdamW
from ablate.registry import register


def check_master_weights(model: nn.Module) -> None:
    """Mixed precision keeps fp32 master weights: refuse a model built in another dtype."""
    bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32]
    if bad:
        raise ValueError(f"mixed precision needs fp32 master weights; not fp32: {bad[:5]}")


@register("precision", "bf16")
class BF16(Precision):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        moment_dtype: Literal["float32", "bfloat16"] = "float32"  # AdamW m and v storage

    def apply(self, model: nn.Module) -> nn.Module:
        check_master_weights(model)
        return model

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def build_optimizer(self, param_groups: list[dict], **adamw: Any) -> torch.optim.Optimizer:
        if self.cfg.moment_dtype == "float32":
            return torch.optim.AdamW(param_groups, **adamw)
        return AdamW(param_groups, moment_dtype=MOMENT_DTYPES[self.cfg.moment_dtype], **adamw)

    def summary(self) -> dict[str, Any]:
        return {
            "backend": "torch_autocast",
            "compute_dtype": "bfloat16",
            "master_dtype": "float32",
            "moment_dtype": self.cfg.moment_dtype,
        }
