"""Supervised fine-tuning on the task's well-formatted reasoning traces (DeepSeek-R1 §2.3.1,
the cold start): next-token loss on the completion tokens of prompt + trace, prompt masked.

Loss: the mean negative log-likelihood over every completion token of the batch (token-level).
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.posttrain.bases import PostTrain, StageConfig
from ablate.posttrain.rollout import supervised_loss, traces
from ablate.registry import register


@register("posttrain", "sft")
class SFT(PostTrain):
    @dataclass(frozen=True, kw_only=True)
    class Config(StageConfig):
        steps: int = 40
        lr: float = 1e-3
        min_lr: float = 1e-4
        batch_size: int = 16  # traces per step

    def step(self, step: int) -> dict[str, float]:
        ctx = self.ctx
        ro = traces(ctx.train_problems(step, self.cfg.batch_size), ctx.tokenizer)
        with ctx.precision.autocast():
            loss = supervised_loss(ctx.model, ro, ctx.device)
        grad_norm = ctx.optimizer_step(loss)
        return {"loss": loss.item(), "grad_norm": grad_norm}
