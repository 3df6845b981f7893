"""BF16 mixed precision: forward under torch.autocast(bfloat16) with fp32 master weights
(Micikevicius et al. 2018, "Mixed Precision Training"; bf16 needs no loss scaling).

Parameters and gradients stay fp32; AdamW moments are fp32 unless `moment_dtype` says bf16
(the DeepSeek-V3 §3.3.3 setting, which `fp8_block` uses by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.nn.mixed_precision import AutocastConfig, AutocastPrecision
from ablate.registry import register


@register("precision", "bf16")
class BF16(AutocastPrecision):
    @dataclass(frozen=True, kw_only=True)
    class Config(AutocastConfig):
        pass
