"""Format reward (DeepSeek-R1 §2.2.2): 1 when the completion is exactly
`<think>...</think><answer>...</answer>` (`ablate.posttrain.format.parse`), else 0."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.posttrain.bases import Problem, Reward, RewardConfig, Task
from ablate.posttrain.format import parse
from ablate.registry import register


@register("reward", "format")
class Format(Reward):
    @dataclass(frozen=True, kw_only=True)
    class Config(RewardConfig):
        pass

    def __call__(self, completion: str, problem: Problem, task: Task) -> float:
        return float(parse(completion) is not None)
