"""What a post-training stage works with: the model, task, rewards, optimizer and samplers.

Built once per trial by the runner (`ablate.posttrain.stage`); stages reach the task and the
rewards only through it. Every draw is a pure function of (seed, stage, step), so a resumed
stage samples what an uninterrupted one would. Shapes: B rows (prompts x samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ablate import registry
from ablate.posttrain import rollout as rollout_mod
from ablate.posttrain.bases import Problem, Reward, Task
from ablate.posttrain.rollout import Rollout

_SEED_MIX = 1_000_003  # spreads (seed, stage, step) into distinct draws


@dataclass
class PostContext:
    cfg: Any  # the root run `Config`
    model: nn.Module
    tokenizer: Any
    task: Task
    rewards: list[tuple[str, Reward, float]]  # (name, reward, weight)
    device: torch.device
    precision: Any  # the trial's precision transform (forwards run under its autocast)
    stage_idx: int = 0
    opt: torch.optim.Optimizer | None = None  # the current stage's optimizer (runner-owned)
    stage_cfg: Any = None  # the current stage's config (schedule, clipping)
    extra: dict[str, Any] = field(default_factory=dict)
    trial_dir: Any = None  # the trial's directory: `trial:<id>` values resolve beside it

    @classmethod
    def build(cls, cfg: Any, model: nn.Module, tokenizer, device, precision) -> PostContext:
        task = registry.build(cfg.data.dataset)
        rewards = [(registry.name_of(r)[1], registry.build(r), r.weight) for r in cfg.post.rewards]
        return cls(cfg, model, tokenizer, task, rewards, device, precision)

    def draw_seed(self, step: int, salt: int = 0) -> int:
        """A seed for the draws of `step` of the current stage."""
        return ((self.cfg.train.seed * _SEED_MIX + self.stage_idx) * _SEED_MIX + step) * 7 + salt

    def train_problems(self, step: int, num: int) -> list[Problem]:
        """The training-split prompts of `step` of the current stage."""
        return self.task.problems("train", num, self.draw_seed(step))

    def sample(
        self,
        problems: list[Problem],
        num_samples: int,
        temperature: float,
        seed: int,
        model: nn.Module | None = None,
    ) -> Rollout:
        """`num_samples` completions per problem from `model` (default: the policy)."""
        with self.precision.autocast():
            return rollout_mod.sample(
                model or self.model,
                self.tokenizer,
                problems,
                num_samples,
                max_new_tokens=self.cfg.post.max_new_tokens,
                temperature=temperature,
                seed=seed,
                device=self.device,
            )

    def score(self, ro: Rollout) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Summed weighted reward per row and each reward's own values (unweighted)."""
        parts = {
            name: torch.tensor([r(t, p, self.task) for t, p in zip(ro.texts, ro.problems)])
            for name, r, _ in self.rewards
        }
        total_B = torch.zeros(len(ro.texts))
        for name, _, weight in self.rewards:
            total_B = total_B + weight * parts[name]
        return total_B, parts

    def optimizer_step(self, loss: torch.Tensor) -> float:
        """Backward, clip (stage's grad_clip), step and zero the grads; the grad norm.

        Under the precision's loss scaling (fp16) as in pre-training: the scaled loss is
        backpropagated and the gradients unscaled before clipping; on an inf/nan gradient the
        step is skipped (grad norm nan) and the scale backs off."""
        self.precision.scale_loss(loss).backward()
        overflow = self.precision.unscale_grads(self.model)
        self.precision.update(overflow)
        norm = math.nan
        if not overflow:
            clip = self.stage_cfg.grad_clip
            params = [p for p in self.model.parameters() if p.grad is not None]
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf))
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return norm

    def rollout_metrics(self, ro: Rollout, reward_B: torch.Tensor) -> dict[str, float]:
        """What R1 plots per step: reward, accuracy, response length, formatted share."""
        return {
            "reward": reward_B.mean().item(),
            "accuracy": ro.correct_B().mean().item(),
            "response_len": ro.lengths_B.mean().item(),
            "format_frac": ro.formatted_B().mean().item(),
        }
