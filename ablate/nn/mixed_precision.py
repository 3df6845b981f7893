"""BF16 autocast with fp32 master weights: the shared base of the mixed-precision transforms
(Micikevicius et al. 2018; bf16 needs no loss scaling). Components subclass it and its config.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ablate.interfaces import Precision
from ablate.nn.optim import MOMENT_DTYPES, AdamW


@dataclass(frozen=True, kw_only=True)
class AutocastConfig:
    moment_dtype: Literal["float32", "bfloat16"] = "float32"  # AdamW m and v storage


def check_master_weights(model: nn.Module) -> None:
    """Mixed precision keeps fp32 master weights: refuse a model built in another dtype."""
    bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32]
    if bad:
        raise ValueError(f"mixed precision needs fp32 master weights; not fp32: {bad[:5]}")


class AutocastPrecision(Precision):
    """Forward under torch.autocast(bfloat16); AdamW moments in `cfg.moment_dtype`."""

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
