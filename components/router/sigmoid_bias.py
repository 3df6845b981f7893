"""Sigmoid router with auxiliary-loss-free bias balancing (DeepSeek-V3, arXiv 2412.19437 §2.1.2;
Wang et al., arXiv 2408.15664), an optional sequence-wise balance loss and group-limited routing.

Shapes (docs/design.md#shapes): N tokens, D width, E routed experts, X experts per token,
W balance scopes (here the B sequences), T tokens per sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ablate.interfaces import BuildContext
from ablate.nn.balance import balance_loss, expert_counts, sequence_counts
from ablate.nn.gate import GROUP_SCORE_TOP, GateBase, group_limited_topk, router_logits
from ablate.registry import register


@register("router", "sigmoid_bias")
class SigmoidBias(GateBase):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        route_scale: float = 1.0  # multiplies the normalized gate weights (V3: 2.5)
        update_rate: float = 1.0e-3  # gamma: bias step per optimizer step; 0 keeps b = 0
        seq_aux_alpha: float = 0.0  # sequence-wise balance loss coefficient (V3: 1e-4); 0 = off
        num_groups: int = 1  # expert groups for group-limited routing (1 = off)
        topk_groups: int = 1  # groups each token may route into

        def check(self, root) -> None:
            for key in ("route_scale", "update_rate", "seq_aux_alpha"):
                if getattr(self, key) < 0:
                    raise ValueError(f"{key} must be >= 0")

    def __init__(self, cfg: Config, ctx: BuildContext, num_experts: int, topk: int) -> None:
        super().__init__(cfg, ctx, num_experts, topk)
        self.register_buffer("bias", torch.zeros(num_experts, dtype=torch.float32))
        # Tokens routed to each expert by the training forwards since the last optimizer step.
        self.register_buffer(
            "counts", torch.zeros(num_experts, dtype=torch.int64), persistent=False
        )

    def _apply(self, fn, recurse=True):
        bias = self.bias
        out = super()._apply(fn, recurse)
        self.bias = bias.to(self.bias.device)  # model-wide dtype casts never touch b: fp32
        return out

    def forward(
        self, x_ND: torch.Tensor, *, num_seqs: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, E, X = self.cfg, self.num_experts, self.topk
        scores_NE = torch.sigmoid(router_logits(x_ND, self.weight))
        # The bias only chooses experts; it never enters the weights or a gradient.
        ids_NX = group_limited_topk(
            scores_NE.detach() + self.bias, X, cfg.num_groups, cfg.topk_groups, GROUP_SCORE_TOP
        )
        weights_NX = scores_NE.gather(1, ids_NX)
        weights_NX = weights_NX / weights_NX.sum(-1, keepdim=True) * cfg.route_scale
        if self._counting():
            self.counts += expert_counts(ids_NX, E)
            if cfg.seq_aux_alpha > 0:
                # f uses the unbiased plain top-k; s' is normalized over all E experts.
                plain_NX = scores_NE.detach().topk(X, dim=-1).indices
                chosen_WE = sequence_counts(plain_NX, num_seqs, E)
                norm_NE = scores_NE / scores_NE.sum(-1, keepdim=True)
                self._loss = cfg.seq_aux_alpha * balance_loss(
                    norm_NE.view(num_seqs, -1, E), chosen_WE, X
                )
        return weights_NX, ids_NX

    def extra_losses(self) -> dict[str, torch.Tensor]:
        return self._pop_loss("seq_balance")

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """b += gamma * sign(mean count - count) over the whole step (all micro-batches/ranks)."""
        counts_E = self.counts.double()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts_E)
        if self.cfg.update_rate > 0 and counts_E.sum() > 0:
            sign_E = torch.sign(counts_E.mean() - counts_E).float()
            self.bias += self.cfg.update_rate * sign_E
        self.counts.zero_()
