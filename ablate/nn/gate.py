"""MoE gate helpers: fp32 router logits, group-limited top-k, and the shared router base.

Shapes (docs/design.md#shapes): N tokens, D width, E routed experts, X experts per token,
M expert groups, J = E/M experts per group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.interfaces import BuildContext, Router
from ablate.nn.balance import check_routing

GROUP_SCORE_TOP = 2  # a group's score: sum of its 2 best biased scores [V3 §2.1.2]


def router_logits(x_ND: torch.Tensor, weight_ED: torch.Tensor) -> torch.Tensor:
    """x W^T in fp32 whatever the autocast or parameter dtype (gating stays in fp32)."""
    with torch.autocast(x_ND.device.type, enabled=False):
        return F.linear(x_ND.float(), weight_ED.float())


def group_limited_topk(
    sel_NE: torch.Tensor, topk: int, num_groups: int, topk_groups: int, group_top: int
) -> torch.Tensor:
    """Ids (N, X) of the X best `sel_NE` inside each token's `topk_groups` best groups.

    A group's score is the sum of its `group_top` best entries (1 = its max); the experts of
    dropped groups are set to -inf, so they never win, even against negative scores.
    """
    if num_groups > 1:
        sel_NMJ = sel_NE.view(sel_NE.shape[0], num_groups, -1)
        group_NM = sel_NMJ.topk(min(group_top, sel_NMJ.shape[-1]), dim=-1).values.sum(-1)
        keep = group_NM.topk(topk_groups, dim=-1).indices  # (N, topk_groups)
        drop_NM = torch.ones_like(group_NM, dtype=torch.bool).scatter_(1, keep, False)
        sel_NE = sel_NMJ.masked_fill(drop_NM[..., None], float("-inf")).flatten(1)
    return sel_NE.topk(topk, dim=-1).indices


class GateBase(Router):
    """Shared state of the shipped routers: the (E, D) centroid matrix, E and X."""

    def __init__(self, cfg, ctx: BuildContext, num_experts: int, topk: int) -> None:
        super().__init__()
        check_routing(num_experts, topk, cfg.num_groups, cfg.topk_groups)
        self.cfg, self.num_experts, self.topk = cfg, num_experts, topk
        # A bare Parameter, not an nn.Linear: precision transforms that swap Linears leave the
        # gate alone (it stays fp32, as in DeepSeek-V3 §3.3.1).
        self.weight = nn.Parameter(torch.empty(num_experts, ctx.model.dim))
        nn.init.normal_(self.weight, mean=0.0, std=ctx.model.init_std)
        self._loss: torch.Tensor | None = None

    def _counting(self) -> bool:
        """True for forwards that train (eval, no-grad and decoding forwards are not counted)."""
        return self.training and torch.is_grad_enabled()

    def _pop_loss(self, key: str) -> dict[str, torch.Tensor]:
        loss, self._loss = self._loss, None
        return {} if loss is None else {key: loss}
