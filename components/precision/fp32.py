"""Full fp32 training: no transform, no autocast (the reference arm)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ablate.interfaces import Precision
from ablate.nn.mixed_precision import weight_bytes_per_param
from ablate.registry import register


@register("precision", "fp32")
class FP32(Precision):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config, device) -> None:
        super().__init__(cfg, device)
        self.bytes_per_param: float | None = None

    def apply(self, model: nn.Module) -> nn.Module:
        self.bytes_per_param = weight_bytes_per_param(model, {})
        return model

    def summary(self) -> dict:
        return {
            "backend": "torch",
            "compute_dtype": "float32",
            "weight_bytes_per_param": self.bytes_per_param,
        }
