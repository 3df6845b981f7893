"""Consistency reward, the toy analogue of DeepSeek-R1's language-consistency reward (§2.3.2):
the share of reasoning characters (tokens of a char tokenizer) inside `<think>...</think>` that
belong to the prescribed vocabulary; 0 without a think section or with an empty one."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.posttrain.bases import Problem, Reward, RewardConfig, Task
from ablate.posttrain.format import think_of
from ablate.registry import register


@register("reward", "consistency")
class Consistency(Reward):
    @dataclass(frozen=True, kw_only=True)
    class Config(RewardConfig):
        vocabulary: str = ""  # allowed reasoning characters; "" = the task's prescribed set

    def __call__(self, completion: str, problem: Problem, task: Task) -> float:
        think = think_of(completion)
        if not think:
            return 0.0
        allowed = set(self.cfg.vocabulary or task.reasoning_vocabulary())
        return sum(c in allowed for c in think) / len(think)
