"""Group Relative Policy Optimization (DeepSeekMath §4.1, eq. 3; DeepSeek-R1 §2.2.1).

Per sampled batch: P prompts, G completions each from the current policy at `temperature`;
rewards r (the weighted sum of `post.rewards`); advantages normalised within each group,
A_i = (r_i - mean(r)) / (std(r) + eps) with the sample standard deviation (no value model).
Then `inner_updates` (mu) optimizer steps on the same batch, each minimising

    L = -1/(P*G) sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-e, 1+e) A_i) - beta k3_it ]

with rho = exp(logp - logp_old) against the sampling policy, and the KL to a frozen reference
(the policy when the stage starts) by the unbiased estimator k3 = exp(ref - logp) -
(ref - logp) - 1 >= 0: the loss is averaged per token within a completion, then over the
group and batch. Log-probs use logits / temperature, the distribution that sampled.
Shapes (docs/design.md#shapes): B completions (P*G), T positions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ablate.posttrain.bases import PostTrain, StageConfig
from ablate.posttrain.rollout import token_logprobs
from ablate.registry import register


def group_advantages(reward_B: torch.Tensor, group_size: int, eps: float) -> torch.Tensor:
    """(r - group mean) / (group sample std + eps); rows i*G .. i*G+G-1 form group i."""
    groups = reward_B.view(-1, group_size)  # (prompts, group_size)
    adv = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + eps)
    return adv.flatten()


def k3(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor) -> torch.Tensor:
    """Per-token unbiased KL estimator exp(ref - logp) - (ref - logp) - 1 (>= 0)."""
    d_BT = ref_logp_BT - logp_BT
    return torch.exp(d_BT) - d_BT - 1


def grpo_loss(
    logp_BT: torch.Tensor,
    old_logp_BT: torch.Tensor,
    ref_logp_BT: torch.Tensor,
    adv_B: torch.Tensor,
    mask_BT: torch.Tensor,
    clip_eps: float,
    beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO objective above (to minimise) and its kl / clip statistics."""
    ratio_BT = torch.exp(logp_BT - old_logp_BT)
    adv_B1 = adv_B[:, None]
    surr_BT = torch.minimum(ratio_BT * adv_B1, ratio_BT.clamp(1 - clip_eps, 1 + clip_eps) * adv_B1)
    kl_BT = k3(logp_BT, ref_logp_BT)
    per_token_BT = -(surr_BT - beta * kl_BT)
    lengths_B = mask_BT.sum(1).clamp(min=1)
    loss = ((per_token_BT * mask_BT).sum(1) / lengths_B).mean()
    clipped_BT = ((ratio_BT - 1).abs() > clip_eps).float()
    n = mask_BT.sum().clamp(min=1)
    stats = {
        "kl": ((kl_BT * mask_BT).sum() / n).item(),
        "clip_frac": ((clipped_BT * mask_BT).sum() / n).item(),
    }
    return loss, stats


@register("posttrain", "grpo")
class GRPO(PostTrain):
    @dataclass(frozen=True, kw_only=True)
    class Config(StageConfig):
        steps: int = 60  # optimizer updates: sampled batches x inner_updates
        lr: float = 3e-4
        min_lr: float = 3e-5
        batch_size: int = 8  # prompts per sampled batch (P)
        group_size: int = 8  # completions per prompt (G)
        inner_updates: int = 2  # optimizer steps per sampled batch (mu)
        clip_eps: float = 0.2  # policy-ratio clip epsilon
        beta: float = 0.04  # KL-penalty coefficient
        temperature: float = 1.0  # sampling temperature (log-probs use the same)
        adv_eps: float = 1e-4  # added to the group std

        def check(self, root) -> None:
            super().check(root)
            if self.group_size < 2 or self.inner_updates < 1 or self.temperature <= 0:
                raise ValueError("group_size >= 2, inner_updates >= 1, temperature > 0")
            if not (0 < self.clip_eps < 1 and self.beta >= 0 and self.adv_eps > 0):
                raise ValueError("clip_eps in (0, 1), beta >= 0, adv_eps > 0")

    def start(self) -> None:
        self.ref = copy.deepcopy(self.ctx.model).eval().requires_grad_(False)
        self.batch: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _sample(self, batch_idx: int) -> dict[str, float]:
        ctx, cfg = self.ctx, self.cfg
        problems = ctx.train_problems(batch_idx, cfg.batch_size)
        ro = ctx.sample(problems, cfg.group_size, cfg.temperature, ctx.draw_seed(batch_idx, 1))
        reward_B, parts = ctx.score(ro)
        ids_BT = ro.ids_BT.to(ctx.device)
        with ctx.precision.autocast():
            old_BT = token_logprobs(ctx.model, ids_BT, cfg.temperature)
            ref_BT = token_logprobs(self.ref, ids_BT, cfg.temperature)
        self.batch = {
            "ids_BT": ids_BT,
            "mask_BT": ro.mask_BT.to(ctx.device),
            "old_BT": old_BT,
            "ref_BT": ref_BT,
            "adv_B": group_advantages(reward_B, cfg.group_size, cfg.adv_eps).to(ctx.device),
        }
        metrics = ctx.rollout_metrics(ro, reward_B)
        metrics.update({f"reward_{k}": v.mean().item() for k, v in parts.items()})
        return metrics

    def step(self, step: int) -> dict[str, float]:
        cfg, ctx = self.cfg, self.ctx
        out = {}
        if (step - 1) % cfg.inner_updates == 0:
            out = self._sample((step - 1) // cfg.inner_updates + 1)
        b = self.batch
        with ctx.precision.autocast():
            logp_BT = token_logprobs(ctx.model, b["ids_BT"], cfg.temperature)
        loss, stats = grpo_loss(
            logp_BT, b["old_BT"], b["ref_BT"], b["adv_B"], b["mask_BT"], cfg.clip_eps, cfg.beta
        )
        grad_norm = ctx.optimizer_step(loss)
        return {**out, "loss": loss.item(), "grad_norm": grad_norm, **stats}

    def state_dict(self) -> dict:
        return {"ref": self.ref.state_dict(), "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.start()
        self.ref.load_state_dict(state["ref"])
        self.batch = state["batch"]
