"""The `eval:` section's config (measurements after training), apart from
`ablate.core.quant_eval` so that loading a config never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SKIP_DEFAULT = ("*emb*", "head.*", "*.head.*", "*gate*", "*router*", "*norm*")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    # post-training weight-only formats evaluated after training, each on the same weights:
    # int8 per output channel (amax/127), int4 group-wise symmetric (amax/7); () = none
    weight_quant: tuple[Literal["int8", "int4"], ...] = ()
    # fnmatch patterns on dotted parameter names left unquantized (embedding, head, router
    # gate, norms); a tied weight is skipped when any of its names matches
    weight_quant_skip: tuple[str, ...] = SKIP_DEFAULT
    int4_group_size: int = 128  # input features per INT4 scale (weight_quant.INT4_GROUP)

    def check(self, root: Any) -> None:
        if len(set(self.weight_quant)) != len(self.weight_quant):
            raise ValueError(f"eval.weight_quant={list(self.weight_quant)}: a format twice")
        if self.int4_group_size < 1:
            raise ValueError(f"eval.int4_group_size={self.int4_group_size}: must be >= 1")
        if any(not p for p in self.weight_quant_skip):
            raise ValueError("eval.weight_quant_skip patterns must be non-empty strings")
        if self.weight_quant and root.train.distributed == "fsdp":  # rows would be shards
            raise ValueError("eval.weight_quant needs whole weights: train.distributed != fsdp")
