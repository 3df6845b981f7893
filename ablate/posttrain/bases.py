"""Bases of the post-training groups (`posttrain`, `reward`) and the verifiable-task contract.

A `posttrain` component is one stage run after pre-training (`post.stages`); a `reward` scores
one completion (`post.rewards`, summed with their weights); a dataset that is also a `Task`
gives prompts, exact reference answers and well-formatted reasoning traces. Constructors:
posttrain `(cfg, ctx: ablate.posttrain.context.PostContext)`, reward `(cfg)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ablate.bases import Configured

END = "\n"  # ends every completion (and every example in a task corpus)


@dataclass(frozen=True)
class Problem:
    """One task instance: the prompt, its exact reference answer, a well-formatted trace."""

    prompt: str  # what the model is given
    answer: str  # the exact answer expected inside <answer>...</answer>
    trace: str  # `<think>...</think><answer>...</answer>`, END excluded


class Task(ABC):
    """A verifiable task a dataset component also implements (deterministic given its config)."""

    @abstractmethod
    def problems(self, split: str, num: int, seed: int) -> list[Problem]:
        """`num` problems of `split` ("train" or "test", disjoint), drawn with `seed`."""

    @abstractmethod
    def reasoning_vocabulary(self) -> str:
        """The characters a consistent reasoning section is written in (consistency reward)."""

    def max_prompt_chars(self) -> int:
        """Longest prompt, in characters (checked against the model's length)."""
        return max(len(p.prompt) for p in self.problems("train", 64, 0))


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """Fields every post-training stage has; a component's `Config` subclasses this one."""

    steps: int = 0  # optimizer updates of this stage (GRPO: sampled batches x inner updates)
    lr: float = 1e-4  # peak learning rate
    min_lr: float = 1e-5  # cosine floor
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    batch_size: int = 8  # prompts per step

    def check(self, root: Any) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.min_lr > self.lr:
            raise ValueError(
                f"steps={self.steps} (>= 0), batch_size={self.batch_size} (>= 1), "
                f"lr={self.lr} (> 0), min_lr={self.min_lr} (<= lr): out of range"
            )


class PostTrain(ABC):
    """One post-training stage: `start` once, then `step` for each of `cfg.steps` updates.

    The runner (`ablate.posttrain.stage`) owns the optimizer (`ctx.opt`), the schedule,
    logging, evaluation and checkpoints; a stage updates `ctx.model` in `step` and returns
    what to log. State that is not the model or optimizer (a frozen reference policy, a pool
    of kept samples) goes through `state_dict` / `load_state_dict` so a resume continues.
    """

    Config: ClassVar[type]
    registry_group: ClassVar[str]
    registry_name: ClassVar[str]

    def __init__(self, cfg: Any, ctx: Any) -> None:
        self.cfg, self.ctx = cfg, ctx

    @property
    def num_steps(self) -> int:
        return self.cfg.steps

    def start(self) -> None:
        """Called once when the stage begins (not on resume): build references, pools."""

    @abstractmethod
    def step(self, step: int) -> dict[str, float]:
        """One update at 1-based `step` of this stage; numbers to log."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    """Fields every reward has; a reward's `Config` subclasses this one."""

    weight: float = 1.0  # its factor in the summed reward


class Reward(Configured):
    """A rule-based reward of one completion (text before END), in [0, 1]."""

    @abstractmethod
    def __call__(self, completion: str, problem: Problem, task: Task) -> float: ...
