"""Multi-token prediction: Y sequential modules predicting tokens 2..Y+1 ahead (DeepSeek-V3 §2.2).

Depth k at position i: h'_i = M_k [enorm(Emb(t_{i+k})); hnorm(h^{k-1}_i)], embedding first as in
the released checkpoint, Megatron and torchtitan (the paper writes [hidden; embedding], which
only permutes M_k's columns); h^k = TRM_k(h'), a Transformer block built from the main model's
registries at the original positions; P^k_i = softmax(head(norm_k(h^k_i))) predicts t_{i+k+1}.
The embedding and head are the main model's. The last k positions of a window have no target.
Shapes (docs/design.md#shapes): B batch, T time, D width, V vocabulary, Y depth (the paper's D).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ablate import registry
from ablate.interfaces import MTP, BuildContext, Drafter
from ablate.nn.drafting import DepthDrafter
from ablate.registry import register

IGNORE = -100  # cross-entropy ignore index for positions without a target


def depth_targets(
    idx_BT: torch.Tensor, targets_BT: torch.Tensor, k: int, doc_sep_id: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth-k embedding inputs t_{i+k} and labels t_{i+k+1} (IGNORE where masked), (B, T) each.

    The window holds t_0..t_T (inputs plus the last target). Positions i > T-k-1 have no
    label. With a document separator, position i is masked when a separator lies in
    t_i..t_{i+k-1}: its context and the embedded token would belong to different documents.
    """
    T = idx_BT.shape[1]
    full_BT = torch.cat([idx_BT, targets_BT[:, -1:]], dim=1)  # T+1 wide: plus the last target
    emb_BT = F.pad(full_BT[:, k : k + T], (0, max(0, k - 1)), value=0)[:, :T]
    labels_BT = F.pad(full_BT[:, k + 1 :], (0, k), value=IGNORE)[:, :T]
    if doc_sep_id >= 0 and k < T:
        sep_cum_BT = F.pad((full_BT == doc_sep_id).long().cumsum(1), (1, 0))
        crossed_BT = (sep_cum_BT[:, k:T] - sep_cum_BT[:, : T - k]) > 0
        labels_BT = labels_BT.clone()
        labels_BT[:, : T - k][crossed_BT] = IGNORE
    return emb_BT, labels_BT


class DepthModule(nn.Module):
    """One MTP depth: enorm, hnorm, eh_proj (2D -> D, no bias), a block and its final norm."""

    def __init__(self, model_cfg, block: nn.Module) -> None:
        super().__init__()
        dim = model_cfg.dim
        self.enorm = registry.build(model_cfg.norm, dim)
        self.hnorm = registry.build(model_cfg.norm, dim)
        self.eh_proj = nn.Linear(2 * dim, dim, bias=False)
        self.block = block
        self.final_norm = registry.build(model_cfg.norm, dim)


@register("mtp", "mtp")
class MultiTokenPrediction(MTP):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        depth: int = 1  # Y: sequential modules, i.e. extra future tokens predicted (V3: 1)
        weight: float = 0.3  # lambda on the mean MTP loss (V3: 0.3 for the first 10T tokens)
        weight_after: float = 0.1  # lambda once `switch_step` optimizer steps are done (V3: 0.1)
        switch_step: int = 0  # optimizer steps before lambda becomes weight_after; 0 = never
        # h^0 fed to depth 1: the trunk output before (torchtitan) or after (Megatron) final_norm
        hidden_input: Literal["pre_norm", "post_norm"] = "pre_norm"
        # per-depth CE normaliser: its T-k valid tokens (Megatron) or the window's T (paper)
        normalize: Literal["valid", "window"] = "valid"
        doc_sep_id: int = -1  # token id ending a packed document; -1 = one continuous stream
        spec_prompts: int = 4  # final_metrics: held-out prompts decoded speculatively; 0 = skip
        spec_prompt_len: int = 32  # tokens per prompt
        spec_new_tokens: int = 64  # tokens generated per prompt
        eval_windows: int = 8  # final_metrics: held-out windows for the MTP validation loss
        eval_seq_len: int = 128  # tokens per such window (clipped to model.max_seq_len)

        def check(self, root) -> None:
            if self.depth < 1:
                raise ValueError("model.mtp.depth must be >= 1 (use model.mtp.name=none for off)")
            if self.weight < 0 or self.weight_after < 0:
                raise ValueError("model.mtp.weight and model.mtp.weight_after must be >= 0")
            if self.switch_step < 0:
                raise ValueError("model.mtp.switch_step must be >= 0")
            counts = (
                self.spec_prompts,
                self.spec_prompt_len,
                self.spec_new_tokens,
                self.eval_windows,
                self.eval_seq_len,
            )
            if min(counts) < 0 or (self.spec_prompts and min(counts[1:3]) < 1):
                raise ValueError(
                    "model.mtp.spec_* and eval_* counts must be >= 0 (prompt "
                    "length and new tokens >= 1 when spec_prompts > 0)"
                )
            vocab = root.model.vocab_size
            if vocab and self.doc_sep_id >= vocab:
                raise ValueError(
                    f"model.mtp.doc_sep_id={self.doc_sep_id} is outside the "
                    f"vocabulary (model.vocab_size={vocab})"
                )

    def __init__(self, cfg: Config, ctx: BuildContext) -> None:
        super().__init__()
        if ctx.make_block is None:
            raise ValueError("the mtp component needs BuildContext.make_block")
        self.cfg = cfg
        self.num_depths = cfg.depth
        m = ctx.model
        # MTP blocks take the layer indices after the trunk's (MoE layer patterns see them).
        self.depths = nn.ModuleList(
            DepthModule(m, ctx.make_block(m.num_layers + k)) for k in range(cfg.depth)
        )
        # Optimizer steps taken, saved in checkpoints so a resumed run keeps the schedule.
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        self._term: torch.Tensor | None = None
        self._sums: torch.Tensor | None = None  # (2, Y): summed loss and top-1 per depth
        self._count = 0
        self._last: dict[str, float] = {}

    # ------------------------------------------------------------------ building blocks
    def main_hidden(self, h_BTD: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """h^0: the trunk output, after the main final norm if `hidden_input` says so."""
        return model.final_norm(h_BTD) if self.cfg.hidden_input == "post_norm" else h_BTD

    def depth_hidden(
        self,
        k: int,
        h_prev_BTD: torch.Tensor,
        emb_ids_BT: torch.Tensor,
        model: nn.Module,
        *,
        start_pos: int = 0,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """h^k from h^{k-1} and the ids t_{i+k} (k is 1-based), at positions start_pos.."""
        mod = self.depths[k - 1]
        e_BTD = mod.enorm(model.tok_emb(emb_ids_BT))
        x_BTD = mod.eh_proj(torch.cat([e_BTD, mod.hnorm(h_prev_BTD)], dim=-1))
        return mod.block(x_BTD, start_pos=start_pos, cache=cache)

    def depth_logits(self, k: int, h_BTD: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """Depth k's logits through its own final norm and the shared head: (B, T, V)."""
        return model.head(self.depths[k - 1].final_norm(h_BTD))

    def new_caches(
        self, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> list[dict[str, torch.Tensor]]:
        """One KV cache per depth's block, for speculative drafting."""
        return [d.block.attn.new_cache(batch_size, max_len, dtype, device) for d in self.depths]

    def current_weight(self) -> float:
        """Lambda at the current optimizer step (the optional schedule applied)."""
        switched = self.cfg.switch_step and int(self.num_steps) >= self.cfg.switch_step
        return self.cfg.weight_after if switched else self.cfg.weight

    def depth_losses(
        self, h_BTD: torch.Tensor, idx_BT: torch.Tensor, targets_BT: torch.Tensor, model: nn.Module
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-depth CE losses L^k and top-1 accuracies against the true label t_{i+k+1}."""
        B, T = idx_BT.shape
        h_BTD = self.main_hidden(h_BTD, model)
        losses, top1 = [], []
        for k in range(1, self.num_depths + 1):
            emb_BT, labels_BT = depth_targets(idx_BT, targets_BT, k, self.cfg.doc_sep_id)
            h_BTD = self.depth_hidden(k, h_BTD, emb_BT, model)
            logits_BTV = self.depth_logits(k, h_BTD, model)
            valid_BT = labels_BT != IGNORE
            num_valid = int(valid_BT.sum())
            ce_sum = F.cross_entropy(
                logits_BTV.flatten(0, 1).float(),
                labels_BT.flatten(),
                ignore_index=IGNORE,
                reduction="sum",
            )
            denom = num_valid if self.cfg.normalize == "valid" else B * T
            losses.append(ce_sum / max(denom, 1))
            hits = (logits_BTV.argmax(-1) == labels_BT) & valid_BT
            top1.append(hits.sum().double() / max(num_valid, 1))
        return losses, top1

    # ------------------------------------------------------------------ hooks
    def forward(self, h_BTD, idx_BT, targets_BT, model) -> None:
        losses, top1 = self.depth_losses(h_BTD, idx_BT, targets_BT, model)
        self._term = self.current_weight() * torch.stack(losses).mean()
        if self.training:
            sums_2Y = torch.stack([torch.stack(losses).detach().double(), torch.stack(top1)])
            self._sums = sums_2Y if self._sums is None else self._sums + sums_2Y
            self._count += 1

    def extra_losses(self) -> dict[str, torch.Tensor]:
        term, self._term = self._term, None
        return {} if term is None else {"mtp": term}

    def drafter(self, model: nn.Module) -> Drafter:
        """Speculative decoding: depth k drafts the token k ahead of the main model's next."""
        return DepthDrafter(self, model)

    def after_optimizer_step(self) -> None:
        self.num_steps += 1

    def metrics(self) -> dict[str, float]:
        if not self.training:
            return {}  # the model runs MTP only in training; see final_metrics for held-out
        if self._count:
            mean_2Y = (self._sums / self._count).cpu()
            self._last = {"mtp_weight": self.current_weight()}
            for k in range(self.num_depths):
                self._last[f"mtp_loss_d{k + 1}"] = float(mean_2Y[0, k])
                self._last[f"mtp_top1_d{k + 1}"] = float(mean_2Y[1, k])  # Megatron's proxy
            self._sums, self._count = None, 0
        return dict(self._last)

    @torch.no_grad()
    def final_metrics(self, model: nn.Module, corpus) -> dict[str, float]:
        out = self._val_losses(model, corpus.val_N)
        if self.cfg.spec_prompts:
            out.update(self._speculative(model, corpus.val_N))
        return out

    def _val_losses(self, model: nn.Module, val_N: torch.Tensor) -> dict[str, float]:
        T = min(self.cfg.eval_seq_len, model.cfg.max_seq_len, len(val_N) - 1)
        num = min(self.cfg.eval_windows, (len(val_N) - 1) // T)
        if num < 1:
            return {}
        device = next(model.parameters()).device
        win_BT = val_N[: num * T + 1].unfold(0, T + 1, T)[:num].to(device)
        h_BTD = model.trunk(win_BT[:, :-1])
        losses, top1 = self.depth_losses(h_BTD, win_BT[:, :-1], win_BT[:, 1:], model)
        out = {}
        for k, (loss, acc) in enumerate(zip(losses, top1), start=1):
            out[f"mtp_val_loss_d{k}"] = float(loss)
            out[f"mtp_val_top1_d{k}"] = float(acc)
        return out

    def _speculative(self, model: nn.Module, val_N: torch.Tensor) -> dict[str, float]:
        from ablate.infer.compare import compare_decoding

        max_len = model.cfg.max_seq_len
        prompt_len = min(self.cfg.spec_prompt_len, max_len // 2)
        new_tokens = min(self.cfg.spec_new_tokens, max_len - prompt_len - self.num_depths)
        if (prompt_len, new_tokens) != (self.cfg.spec_prompt_len, self.cfg.spec_new_tokens):
            warnings.warn(
                f"mtp final_metrics: prompts clipped to {prompt_len} + {new_tokens} "
                f"tokens to fit model.max_seq_len={max_len}",
                stacklevel=2,
            )
        if new_tokens < 1:
            return {}
        last = len(val_N) - prompt_len
        starts = [
            math.floor(i * last / self.cfg.spec_prompts) for i in range(self.cfg.spec_prompts)
        ]
        prompts_BT = torch.stack([val_N[s : s + prompt_len] for s in starts])
        device = next(model.parameters()).device
        return compare_decoding(model, prompts_BT.to(device), new_tokens)
