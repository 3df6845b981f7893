"""No post-training: the trial ends after pre-training (the default stage)."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.posttrain.bases import PostTrain, StageConfig
from ablate.registry import register


@register("posttrain", "none")
class NoPostTrain(PostTrain):
    @dataclass(frozen=True, kw_only=True)
    class Config(StageConfig):
        pass

    @property
    def num_steps(self) -> int:
        return 0

    def step(self, step: int) -> dict[str, float]:
        raise AssertionError("the none stage takes no step")
