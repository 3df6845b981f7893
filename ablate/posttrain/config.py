"""The `post:` section of a trial config: its stages, rewards and evaluation cadence.

Stages run in order after pre-training (`train.steps` may be 0 with `train.init_from`); the
default, one `none` stage, runs nothing and leaves the trial id as it was
(`ablate.core.identity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ablate import registry
from ablate.core.slots import slot_list


@dataclass(frozen=True, kw_only=True)
class PostConfig:
    stages: tuple[Any, ...] = slot_list("posttrain", ("none",))  # run in order
    rewards: tuple[Any, ...] = slot_list("reward", ("accuracy", "format"))  # weighted sum
    max_new_tokens: int = 64  # completion length sampled per prompt (cut at the end marker)
    eval_every: int = 20  # post steps between evaluations (the last step is always evaluated)
    eval_prompts: int = 32  # held-out (test split) prompts per evaluation
    eval_samples: int = 4  # k completions per prompt; pass@1 = mean correctness over them
    eval_temperature: float = 0.6  # sampling temperature at evaluation
    log_every: int = 1  # post steps between logged rows
    checkpoint_every: int = 20  # post steps between checkpoints (and at each stage's end)

    def active(self) -> bool:
        """Whether any stage trains (a `none` stage has no steps)."""
        return any(registry.name_of(s)[1] != "none" and s.steps > 0 for s in self.stages)

    def check(self, root: Any) -> None:
        for key in ("max_new_tokens", "eval_every", "eval_prompts", "eval_samples"):
            if getattr(self, key) < 1:
                raise ValueError(f"post.{key}={getattr(self, key)}: must be >= 1")
        if self.log_every < 1 or self.checkpoint_every < 0 or self.eval_temperature < 0:
            raise ValueError("post.log_every >= 1, checkpoint_every >= 0, eval_temperature >= 0")
        if not self.active():
            return
        if root.train.distributed != "none":
            raise ValueError("post.stages run on one process: train.distributed must be none")
        dataset = registry.build(root.data.dataset)
        from ablate.posttrain.bases import Task

        if not isinstance(dataset, Task):
            name = registry.name_of(root.data.dataset)[1]
            raise ValueError(f"post.stages need a task dataset; data.dataset {name} is none")
        prompt = dataset.max_prompt_chars()
        if prompt + self.max_new_tokens > root.model.max_seq_len:
            raise ValueError(
                f"post.max_new_tokens={self.max_new_tokens}: prompt ({prompt} chars) + "
                f"completion exceed model.max_seq_len ({root.model.max_seq_len})"
            )
