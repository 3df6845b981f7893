"""Full fp32 training: no transform, no autocast (the reference arm)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ablate.interfaces import Precision
from ablate.registry import register


@register("precision", "fp32")
class FP32(Precision):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        pass

    def apply(self, model: nn.Module) -> nn.Module:
        return model

    def summary(self) -> dict:
        return {"backend": "torch"}
