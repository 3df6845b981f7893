"""No multi-token prediction: the trunk trains on next-token loss alone."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.interfaces import MTP, BuildContext
from ablate.registry import register


@register("mtp", "none")
class NoMTP(MTP):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config, ctx: BuildContext) -> None:
        super().__init__()

    def forward(self, h_BTD, idx_BT, targets_BT, model) -> None:
        return None
