"""Autocast with fp32 master weights: the shared base of the mixed-precision transforms
(Micikevicius et al. 2018; bf16 by default, which needs no loss scaling). Components subclass
it and its config; `keep_high_precision` keeps chosen Linears out of autocast.
"""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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


class HighPrecisionLinear(nn.Linear):
    """An nn.Linear (same parameters and state-dict keys) computed in fp32 under autocast."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(
            linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta"
        )
        self.weight, self.bias = linear.weight, linear.bias  # share, so ties survive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def keep_high_precision(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Swap the nn.Linears whose dotted module name matches an fnmatch pattern for
    `HighPrecisionLinear`; their names."""
    kept = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not nn.Linear:
                continue
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                setattr(parent, child_name, HighPrecisionLinear(child))
                kept.append(name)
    return kept


def weight_bytes_per_param(model: nn.Module, read_bytes: dict[int, int]) -> float:
    """Bytes per parameter of the weights as the forward reads them (each tensor once):
    `read_bytes[id(p)]` for a weight a low-precision GEMM reads, else its storage size.
    Stacked expert weights passed to a grouped GEMM count at their storage size."""
    params = list(model.parameters())
    total = sum(read_bytes.get(id(p), p.numel() * p.element_size()) for p in params)
    return total / max(1, sum(p.numel() for p in params))


class AutocastPrecision(Precision):
    """Forward under torch.autocast(`compute_dtype`); AdamW moments in `cfg.moment_dtype`."""

    compute_dtype: ClassVar[torch.dtype] = torch.bfloat16
    bytes_per_param: float | None = None  # of the weights as read, set by `count_bytes`

    def apply(self, model: nn.Module) -> nn.Module:
        check_master_weights(model)
        self.count_bytes(model)
        return model

    def count_bytes(self, model: nn.Module, read_bytes: dict[int, int] | None = None) -> None:
        """Record the bytes per parameter the forward reads: plain nn.Linear weights in
        `compute_dtype`, `read_bytes` (by id) for others; call again after swapping layers."""
        size = torch.empty(0, dtype=self.compute_dtype).element_size()
        linears = [m for m in model.modules() if type(m) is nn.Linear]
        low = {id(m.weight): m.weight.numel() * size for m in linears}
        self.bytes_per_param = weight_bytes_per_param(model, low | (read_bytes or {}))

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def build_optimizer(self, param_groups: list[dict], **adamw: Any) -> torch.optim.Optimizer:
        if self.cfg.moment_dtype == "float32":
            return torch.optim.AdamW(param_groups, **adamw)
        # ablate.nn.optim.AdamW has one kernel (a loop over parameters): no fused/foreach choice
        adamw = {k: v for k, v in adamw.items() if k not in ("fused", "foreach")}
        return AdamW(param_groups, moment_dtype=MOMENT_DTYPES[self.cfg.moment_dtype], **adamw)

    def summary(self) -> dict[str, Any]:
        return {
            "backend": "torch_autocast",
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
            "master_dtype": "float32",
            "moment_dtype": self.cfg.moment_dtype,
            "weight_bytes_per_param": self.bytes_per_param,
        }
