"""Distillation (DeepSeek-R1 §2.4): a student fine-tuned on completions sampled from a teacher,
another trial's final model (its post-trained weights when it has them), with the same
tokenizer. Kept: the distinct completions that are correct and well-formed (`filter_correct`,
as R1 curates its 800k samples), or all of them. Loss: token-level mean NLL of the kept ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.posttrain.bases import PostTrain, StageConfig
from ablate.posttrain.pool import Pool, load_sampler
from ablate.posttrain.rollout import supervised_loss
from ablate.registry import register


@register("posttrain", "distill")
class Distill(PostTrain):
    @dataclass(frozen=True, kw_only=True)
    class Config(StageConfig):
        steps: int = 40
        lr: float = 1e-3
        min_lr: float = 1e-4
        batch_size: int = 16  # teacher completions per step
        teacher: str = ""  # the teacher's trial directory
        num_prompts: int = 128  # training prompts the teacher answers
        samples_per_prompt: int = 2
        temperature: float = 0.6  # the teacher's sampling temperature
        filter_correct: bool = True  # keep only correct, well-formed completions

        def check(self, root) -> None:
            super().check(root)
            if self.num_prompts < 1 or self.samples_per_prompt < 1 or self.temperature < 0:
                raise ValueError("num_prompts >= 1, samples_per_prompt >= 1, temperature >= 0")

    def start(self) -> None:
        if not self.cfg.teacher:  # checked here: a sweep's teacher may not exist yet at expansion
            raise ValueError("distill.teacher: a trial directory is required for distillation")
        teacher = load_sampler(self.cfg.teacher, self.ctx)
        self.pool = Pool()
        self.pool.build(
            self.ctx,
            teacher,
            num_prompts=self.cfg.num_prompts,
            num_samples=self.cfg.samples_per_prompt,
            temperature=self.cfg.temperature,
            keep_correct=self.cfg.filter_correct,
        )
        if not self.pool.rows:
            raise ValueError(
                f"distill: none of the teacher's {self.pool.num_sampled} samples passed the "
                "filter (filter_correct); nothing to distill"
            )

    def step(self, step: int) -> dict[str, float]:
        ctx = self.ctx
        ro = self.pool.batch(ctx, step, self.cfg.batch_size)
        with ctx.precision.autocast():
            loss = supervised_loss(ctx.model, ro, ctx.device)
        grad_norm = ctx.optimizer_step(loss)
        return {"loss": loss.item(), "grad_norm": grad_norm, "pool_size": len(self.pool.rows)}

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool = Pool()
        self.pool.load_state_dict(state["pool"])
