"""Accuracy reward (DeepSeek-R1 §2.2.2): 1 when the text inside `<answer>...</answer>` equals the
reference answer exactly, else 0."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.posttrain.bases import Problem, Reward, RewardConfig, Task
from ablate.posttrain.format import answer_of, parse
from ablate.registry import register


@register("reward", "accuracy")
class Accuracy(Reward):
    @dataclass(frozen=True, kw_only=True)
    class Config(RewardConfig):
        # also require the whole completion to be well-formed (else any <answer> pair counts)
        require_format: bool = False

    def __call__(self, completion: str, problem: Problem, task: Task) -> float:
        if self.cfg.require_format:
            parsed = parse(completion)
            answer = parsed.answer if parsed else None
        else:
            answer = answer_of(completion)
        return float(answer == problem.answer)
