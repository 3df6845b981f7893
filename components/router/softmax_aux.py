"""Softmax router with the classic auxiliary balance loss (Switch/GShard form; DeepSeek-V2,
arXiv 2405.04434 eq. 23-25), optional group-limited (device-limited) routing.

Shapes (docs/design.md#shapes): N tokens, D width, E routed experts, X experts per token,
W balance scopes (the B sequences, or one micro-batch), T tokens per scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ablate.nn.balance import balance_loss, sequence_counts
from ablate.nn.gate import GateBase, group_limited_topk, router_logits
from ablate.registry import register

GROUP_SCORE_TOP = 1  # a group's score: its best probability (V2 device-limited routing)


@register("router", "softmax_aux")
class SoftmaxAux(GateBase):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        route_scale: float = 1.0  # multiplies the raw top-k probabilities (V2: 16, V2-Lite: 1)
        alpha: float = 1.0e-3  # auxiliary balance loss coefficient (V2-Lite: 1e-3); 0 = off
        # Tokens the loss's f and P are counted over: each sequence, or the whole micro-batch.
        scope: Literal["sequence", "micro_batch"] = "sequence"
        num_groups: int = 1  # expert groups for group-limited routing (1 = off)
        topk_groups: int = 1  # groups each token may route into

        def check(self, root) -> None:
            for key in ("route_scale", "alpha"):
                if getattr(self, key) < 0:
                    raise ValueError(f"{key} must be >= 0")

    def forward(
        self, x_ND: torch.Tensor, *, num_seqs: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, E, X = self.cfg, self.num_experts, self.topk
        probs_NE = torch.softmax(router_logits(x_ND, self.weight), dim=-1)
        ids_NX = group_limited_topk(
            probs_NE.detach(), X, cfg.num_groups, cfg.topk_groups, GROUP_SCORE_TOP
        )
        weights_NX = probs_NE.gather(1, ids_NX) * cfg.route_scale  # not renormalized
        if self._counting() and cfg.alpha > 0:
            num_scopes = num_seqs if cfg.scope == "sequence" else 1
            chosen_WE = sequence_counts(ids_NX, num_scopes, E)  # the routing actually used
            self._loss = cfg.alpha * balance_loss(probs_NE.view(num_scopes, -1, E), chosen_WE, X)
        return weights_NX, ids_NX

    def extra_losses(self) -> dict[str, torch.Tensor]:
        return self._pop_loss("aux_balance")
