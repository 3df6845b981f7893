"""Rejection-sampling SFT (DeepSeek-R1 §2.3.3): sample k completions per training prompt from
the current model (e.g. an RL checkpoint), keep the distinct ones that are correct and
well-formed, and fine-tune on them (token-level mean NLL of the kept completions).

The pool is drawn once when the stage starts (`ablate.posttrain.pool`); its size and the share
kept are logged with every step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ablate.posttrain.bases import PostTrain, StageConfig
from ablate.posttrain.pool import Pool
from ablate.posttrain.rollout import supervised_loss
from ablate.registry import register


@register("posttrain", "rejection_sampling_sft")
class RejectionSamplingSFT(PostTrain):
    @dataclass(frozen=True, kw_only=True)
    class Config(StageConfig):
        steps: int = 40
        lr: float = 3e-4
        min_lr: float = 3e-5
        batch_size: int = 16  # kept completions per step
        num_prompts: int = 64  # training prompts sampled for the pool
        samples_per_prompt: int = 8  # k
        temperature: float = 1.0  # sampling temperature of the pool

        def check(self, root) -> None:
            super().check(root)
            if self.num_prompts < 1 or self.samples_per_prompt < 1 or self.temperature < 0:
                raise ValueError("num_prompts >= 1, samples_per_prompt >= 1, temperature >= 0")

    def start(self) -> None:
        self.pool = Pool()
        sampler = copy.deepcopy(self.ctx.model).eval()
        self.pool.build(
            self.ctx,
            sampler,
            num_prompts=self.cfg.num_prompts,
            num_samples=self.cfg.samples_per_prompt,
            temperature=self.cfg.temperature,
            keep_correct=True,
        )
        if not self.pool.rows:
            raise ValueError(
                f"rejection_sampling_sft: none of {self.pool.num_sampled} samples was correct "
                "and well-formed; nothing to fine-tune on (train the model further first)"
            )

    def step(self, step: int) -> dict[str, float]:
        ctx = self.ctx
        ro = self.pool.batch(ctx, step, self.cfg.batch_size)
        with ctx.precision.autocast():
            loss = supervised_loss(ctx.model, ro, ctx.device)
        grad_norm = ctx.optimizer_step(loss)
        kept = len(self.pool.rows) / max(1, self.pool.num_sampled)
        return {
            "loss": loss.item(),
            "grad_norm": grad_norm,
            "pool_size": len(self.pool.rows),
            "pool_kept_frac": kept,
        }

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool = Pool()
        self.pool.load_state_dict(state["pool"])
