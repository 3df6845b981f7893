"""DeepSeekMoE feed-forward: fused shared experts plus fine-grained routed SwiGLU experts
(DeepSeek-V3, arXiv 2412.19437 eq. 12-16; DeepSeekMoE, arXiv 2401.06066).

Shapes (docs/design.md#shapes): B batch, T time, D width, N = B*T tokens, E routed experts,
X experts per token, A = N*X token-expert assignments, F expert hidden width, I/O a matmul's
in/out widths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ablate import registry
from ablate.core.config import slot
from ablate.interfaces import FFN, BuildContext
from ablate.nn.balance import check_routing, expert_counts, maxvio, relative_load, sequence_counts
from ablate.nn.grouped import GroupedLinear, grouped_linear, looped_linear  # noqa: F401
from ablate.nn.swiglu import SwiGLU, swiglu_width
from ablate.registry import register

TRAIN, EVAL = 0, 1  # rows of the per-mode counters
WIDTH_MULTIPLE = 8  # default expert widths round down to this (aligned in fp32 and bf16)


@register("ffn", "moe")
class MoE(FFN):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        num_routed_experts: int = 8  # E: fine-grained routed experts per MoE layer
        num_shared_experts: int = 1  # always-on experts, fused into one SwiGLU of N_s * F
        topk: int = 2  # X: routed experts per token
        expert_dim: int = 0  # F: each expert's width; 0 = dense width // (N_s + X), to 8
        first_k_dense: int = 0  # leading layers that use a dense SwiGLU instead (V3: 3)
        dense_hidden_dim: int = 0  # those layers' width; 0 = 8/3 * model.dim rounded up to 32
        router: Any = slot("router", "sigmoid_bias")  # gate choosing X of E experts per token

        def check(self, root) -> None:
            for key in ("num_shared_experts", "expert_dim", "first_k_dense", "dense_hidden_dim"):
                if getattr(self, key) < 0:
                    raise ValueError(f"{key} must be >= 0")
            if self.num_routed_experts < 1:
                raise ValueError("num_routed_experts must be >= 1")
            if self.first_k_dense >= root.model.num_layers:
                raise ValueError(
                    f"first_k_dense={self.first_k_dense} leaves no MoE layer among "
                    f"model.num_layers={root.model.num_layers}; use ffn dense instead"
                )
            check_routing(
                self.num_routed_experts,
                self.topk,
                getattr(self.router, "num_groups", 1),
                getattr(self.router, "topk_groups", 1),
            )

    def __init__(self, cfg: Config, ctx: BuildContext) -> None:
        super().__init__()
        self.cfg = cfg
        dim, num_experts = ctx.model.dim, cfg.num_routed_experts
        if ctx.layer_idx < cfg.first_k_dense:
            self.dense = SwiGLU(dim, cfg.dense_hidden_dim or swiglu_width(dim))
            return
        self.dense = None
        per_expert = swiglu_width(dim) // (cfg.num_shared_experts + cfg.topk) // WIDTH_MULTIPLE
        hidden = cfg.expert_dim or max(1, per_expert) * WIDTH_MULTIPLE
        # Concatenating N_s experts' hidden units is exactly their sum (V3 code fuses them).
        self.shared = (
            SwiGLU(dim, cfg.num_shared_experts * hidden) if cfg.num_shared_experts else None
        )
        self.router = registry.build(cfg.router, ctx, num_experts, cfg.topk)
        # Stacked expert weights in (out, in) layout like nn.Linear: gate and up fused.
        self.w13 = nn.Parameter(torch.empty(num_experts, 2 * hidden, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden))
        for w in (self.w13, self.w2):
            nn.init.normal_(w, mean=0.0, std=ctx.model.init_std)
        # The two grouped GEMMs as modules, so a precision transform can swap them (fp8_block)
        self.w13_gemm, self.w2_gemm = GroupedLinear(), GroupedLinear()
        zeros = torch.zeros  # non-persistent counters for the balance metrics
        self.register_buffer("step_loads", zeros(num_experts, dtype=torch.int64), False)
        self.register_buffer("mode_loads", zeros(2, num_experts, dtype=torch.int64), False)
        self.register_buffer("batch_vio", zeros(2, dtype=torch.float64), False)  # sum, steps
        self.register_buffer("seq_vio", zeros(2, 2, dtype=torch.float64), False)  # sum, seqs

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if self.dense is None:  # model-wide dtype casts must not round the metric sums
            self.batch_vio, self.seq_vio = self.batch_vio.double(), self.seq_vio.double()
        return out

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        if self.dense is not None:
            return self.dense(x_BTD)
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(B * T, D)
        weights_NX, ids_NX = self.router(x_ND, num_seqs=B)
        out_ND = self.routed(x_ND, weights_NX, ids_NX)
        if self.shared is not None:
            out_ND = out_ND + self.shared(x_ND)
        if not (self.training and not torch.is_grad_enabled()):  # as for the routing bias,
            self._count(ids_NX, B)  # only forwards that train are training loads
        return out_ND.view(B, T, D)

    def routed(
        self, x_ND: torch.Tensor, weights_NX: torch.Tensor, ids_NX: torch.Tensor
    ) -> torch.Tensor:
        """Sum_k weight_k * expert_{id_k}(x): assignments sorted by expert, two grouped GEMMs."""
        X = ids_NX.shape[1]
        ids_A = ids_NX.flatten()
        order_A = ids_A.argsort(stable=True)
        token_A = order_A // X
        ends_E = expert_counts(ids_A, self.cfg.num_routed_experts).cumsum(0)
        # index_select, not x[token_A]: same values, ~7x faster on CPU, and its backward is an
        # index_add_ rather than an accumulating index_put_
        x_AD = x_ND.index_select(0, token_A)
        gate_AF, up_AF = self.w13_gemm(x_AD, self.w13, ends_E).chunk(2, dim=-1)
        y_AD = self.w2_gemm(F.silu(gate_AF) * up_AF, self.w2, ends_E)
        y_AD = y_AD * weights_NX.flatten().index_select(0, order_A)[:, None].to(y_AD.dtype)
        return y_AD.new_zeros(x_ND.shape).index_add_(0, token_A, y_AD)

    def param_parts(self) -> dict[str, tuple[int, float]]:
        """Shared experts every token uses; routed experts, of which a token uses X of E."""
        if self.dense is not None:
            return super().param_parts()
        shared = sum(p.numel() for p in self.shared.parameters()) if self.shared else 0
        routed = self.w13.numel() + self.w2.numel()
        active = self.cfg.topk / self.cfg.num_routed_experts
        return {"shared_experts": (shared, 1.0), "routed_experts": (routed, active)}

    @torch.no_grad()
    def _count(self, ids_NX: torch.Tensor, num_seqs: int) -> None:
        mode = TRAIN if self.training else EVAL
        loads_E = expert_counts(ids_NX, self.cfg.num_routed_experts)
        self.mode_loads[mode] += loads_E
        if mode == TRAIN:
            self.step_loads += loads_E
        seq_vio_B = maxvio(sequence_counts(ids_NX, num_seqs, self.cfg.num_routed_experts))
        self.seq_vio[mode] += torch.stack([seq_vio_B.sum(), seq_vio_B.new_tensor(num_seqs)])

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self.dense is None and self.step_loads.sum() > 0:
            self.batch_vio += torch.stack([maxvio(self.step_loads), self.batch_vio.new_ones(())])
            self.step_loads.zero_()

    @torch.no_grad()
    def metrics(self) -> dict[str, float]:
        """Train mode: `maxvio_batch` (mean over the optimizer steps since the last call),
        `maxvio_seq` and `expert_load/<i>` (Load_i / mean load since the last call).
        Eval mode: `maxvio_global` over the whole pass and `maxvio_seq`. Counters reset."""
        mode = TRAIN if self.training else EVAL
        if self.dense is not None or self.mode_loads[mode].sum() == 0:
            return {}
        out = {"maxvio_seq": (self.seq_vio[mode, 0] / self.seq_vio[mode, 1]).item()}
        if mode == TRAIN:
            self.after_optimizer_step()  # close a step still open (hooks called out of order)
            out["maxvio_batch"] = (self.batch_vio[0] / self.batch_vio[1]).item()
            rel_E = relative_load(self.mode_loads[mode])
            out.update({f"expert_load/{i}": v for i, v in enumerate(rel_E.tolist())})
            self.batch_vio.zero_()
        else:
            out["maxvio_global"] = maxvio(self.mode_loads[mode]).item()
        self.mode_loads[mode].zero_()
        self.seq_vio[mode].zero_()
        return out
